"""Hardware-in-the-loop rig: simulated GPS on a pty, CAN generator, link emulator, demo."""
