"""How far to trust a figure: adaptive repetitions, the machine's conditions during a test, and the trust label."""
