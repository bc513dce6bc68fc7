"""Parts shared by the semi-dense (LoFTR-family) matchers: S2LD, IMAMatch.

One module per part: ``resnet_fpn`` (backbone), ``linear_attention`` (elu+1 linear and full attention),
``transformer`` (LoFTR's local feature transformer), ``position_encoding`` (LoFTR's sine encoding),
``coarse_matching`` (dual-softmax matching), ``fine_windows`` (window extraction), ``soft_argmax``
(spatial expectation with standard deviation). Import from the modules themselves.
"""
