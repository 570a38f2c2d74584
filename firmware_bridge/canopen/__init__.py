"""CANopen CiA 402 drives: object dictionary (`od`), the 402 state machine (`cia402`), bring-up and PDO
streaming for an arm of drives (`arm`). Built on the `canopen` and python-can packages, loaded lazily."""
