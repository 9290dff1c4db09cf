"""Experiment families: the residual-network systems of the related papers, each a module
implementing :class:`iterconv.families.registry.Family` with its typed configuration
(:mod:`iterconv.families.config`)."""

# The table of families, name -> module; importing this package stays cheap (the command line
# lists the names).
FAMILY_MODULES = {
    "implicit": "iterconv.families.implicit",  # Reshniak & Webster 2019: implicit residual networks
    "van": "iterconv.families.van",  # the VAN paper: phasing out skip-connections
    "shortcut": "iterconv.families.shortcut",  # Liu et al. 2019: two-layer ResNet teacher-student
}
# Version of each family's job results: bump it when a change of the family's code changes what
# its jobs compute, so that they are run again under new addresses (docs/pipeline.md).
FAMILY_VERSION = {"implicit": 2, "van": 2, "shortcut": 2}
