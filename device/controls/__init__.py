"""Controls: the device state machine and the physical user interface.

Owns the one explicit state machine (a pure transition function: events in, state and effects out), the
button with its gestures (debounce, hold, double press) and the LEDs whose patterns are a pure function of
the state, all through gpiozero so MockFactory backs tests and `--simulate`.
"""
