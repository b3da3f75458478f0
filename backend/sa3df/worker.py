"""``python -m sa3df.worker``: the stable entry point of the backend worker (see :mod:`sa3df.service.worker`)."""

from sa3df.service.worker import main

if __name__ == "__main__":
    main()
