import sys

from reasonkit.cli import main

sys.exit(main())
