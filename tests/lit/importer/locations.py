# RUN: %python %s | FileCheck %s
# Every op carries the FX node's name over the model source line that produced it.
import torch
from qmlir.testing import print_ir


class Model(torch.nn.Module):
    def forward(self, x):
        y = x * 2.0
        return torch.tanh(y)


# CHECK-LABEL: // locations
# CHECK: #[[MUL_SRC:loc[0-9]+]] = loc("{{.*}}locations.py":9:0)
# CHECK: #[[TANH_SRC:loc[0-9]+]] = loc("{{.*}}locations.py":10:0)
# CHECK: #[[MUL:loc[0-9]+]] = loc("mul"(#[[MUL_SRC]]))
# CHECK: #[[TANH:loc[0-9]+]] = loc("tanh"(#[[TANH_SRC]]))
# CHECK: arith.mulf %{{.+}}, %{{.+}} : f32 loc(#[[MUL]])
# CHECK: math.tanh %{{.+}} : f32 loc(#[[TANH]])
print_ir(Model(), torch.randn(3), title="locations", locations=True)
