"""edgeact.firmware_bridge: motor buses (Dynamixel Protocol 2.0, CANopen CiA 402) and their emulators."""
