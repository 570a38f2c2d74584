"""Simulation module: byte-level device emulators that stand in for hardware in tests and `rt-run --dry-run`.

- `dynamixel_chain.DynamixelChainEmulator`: a chain of X-series servos behind a real pty.
- `cia402_drive.Cia402DriveEmulator`: a CiA 402 drive (canopen LocalNode) on a python-can bus.
Nothing in here is used when driving real hardware.
"""
