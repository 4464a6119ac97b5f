import sys

from voice_device_tokens.cli import main

sys.exit(main())
