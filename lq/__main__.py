import sys

from lq.cli import main

sys.exit(main())
