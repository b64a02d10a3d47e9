import sys

from ganforge.cli import main

sys.exit(main())
