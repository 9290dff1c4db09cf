import sys

from iterconv.cli import main

sys.exit(main())
