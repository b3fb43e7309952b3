"""Paper reproductions and demos, one module each, used by the `flowdip` command line."""
