"""ganforge's first-party plugins, each loaded through the `ganforge` entry-point group like any third party's."""
