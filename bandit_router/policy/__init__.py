"""The policy: context features, the VW quality regressor, exploration, the quality gate and OPE."""
