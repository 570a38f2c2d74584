"""Feetech SCS protocol (STS3215): packet codec (`protocol`), control table (`control_table`), motor bus
(`bus`), arm (`arm`) and robot config (`config`)."""
