"""genretag's built-in backends: svc, cnn and resnet.

They register through the ``genretag.backends`` entry-point group in
setup.cfg, exactly as a third party's backend would; the core never
imports this package directly.
"""
