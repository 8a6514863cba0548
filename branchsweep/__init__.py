"""branchsweep: resource-efficient branched multi-task networks (BMTAS, Learning to Branch) and their
accuracy-vs-MAdds Pareto fronts.

The core: :class:`~branchsweep.arch.BranchConfig` (the architecture contract),
:func:`~branchsweep.backbones.create_backbone` (layer-list backbones),
:class:`~branchsweep.network.BranchedNetwork`, :func:`~branchsweep.madds.madds_table`.
"""

__version__ = "0.1.0"
