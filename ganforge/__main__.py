import sys

from ganforge.cli.commands import main

sys.exit(main())
