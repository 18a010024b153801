"""Runnable examples: what LSTMs are for, trained with fastlstm and NumPy alone (see each module)."""
