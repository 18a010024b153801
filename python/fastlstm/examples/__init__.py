"""Runnable examples: what LSTMs are for, trained with fastlstm and NumPy alone. `python -m fastlstm.examples`
lists them; each module's docstring says what it shows, how to run it and what to expect."""
