//! Unit tests of the state machine through the scripted operator.
