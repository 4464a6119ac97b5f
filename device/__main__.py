"""`python -m device` is the same as the `voice-device` console script."""

from device.cli import main

raise SystemExit(main())
