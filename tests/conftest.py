"""Test-wide settings."""

import torch

# Tiny networks train far faster on one thread than on several competing ones (2-core machines).
torch.set_num_threads(1)
