"""The calculation: cluster state in, decisions and plans out.

Pure: no I/O, no clock, no randomness, no hidden state. Every output is a function of the
current input only, and is deterministic (sort before choosing), so every node and every
run computes the same answer.
"""
