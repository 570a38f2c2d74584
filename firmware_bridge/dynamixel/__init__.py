"""Dynamixel Protocol 2.0: packet codec (`protocol`), control tables (`control_table`), motor bus (`bus`)."""
