import sys

from branchsweep.cli import main

sys.exit(main())
