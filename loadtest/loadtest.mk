# load-test targets (see loadtest/README.md)
