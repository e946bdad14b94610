"""One parser per text form a call is left in; :mod:`.._find` decides where each one is tried."""
