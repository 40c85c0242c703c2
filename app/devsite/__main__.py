import sys

from app.devsite import main

sys.exit(main())
