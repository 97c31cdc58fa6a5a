"""Network definitions trained from scratch (torch modules), registered by name in
:data:`diffred.core.models.ARCHITECTURES` — kept apart so that importing the registry stays free of
torch."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a (projected) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A 3-stage ResNet with batch norm: (B, 3, R, R) -> logits (B, n_classes).

    stem (width w) -> layer1 (w) -> layer2 (2w, /2) -> layer3 (4w, /2) -> avg-pool -> fc.
    """

    def __init__(self, n_classes: int, width: int = 16, blocks_per_stage: int = 1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        widths, c = [width, 2 * width, 4 * width], width
        for i, w in enumerate(widths):
            layers = [BasicBlock(c if j == 0 else w, w, (1 if i == 0 else 2) if j == 0 else 1)
                      for j in range(blocks_per_stage)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
            c = w
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(x.mean((2, 3)))
