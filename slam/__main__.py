from slam.cli import main

raise SystemExit(main())
