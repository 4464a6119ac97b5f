"""The token server is its own project (tokenserver/): its tests import this checkout's copy of it, as pytest's
`pythonpath` does for the device, whether or not `pip install -e tokenserver` ran (scripts/setup.sh does)."""

import sys

from tests.tokenserver.harness import PACKAGE_DIR

if str(PACKAGE_DIR) not in sys.path:
    sys.path.insert(0, str(PACKAGE_DIR))
