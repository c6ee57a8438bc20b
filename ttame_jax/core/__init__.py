"""T-TAME itself: the attention mechanism on a frozen backbone, its loss and ``explain``.

Modules (one job each):

* ``resize``     bilinear resize with torch ``align_corners=False`` semantics
* ``adapter``    feature map adapter (CNN identity, ViT tokens -> NHWC) and (H_e, W_e)
* ``attention``  feature branches + fusion (Flax linen), Table 6 variants
* ``loss``       Ψ selection and the reference / paper loss (pure)
* ``masking``    CNN / ViT masking with the predicted-class map (pure)
* ``model``      ``build(spec, model_cfg) -> TTAME`` with init / loss_fn / forward
* ``explainer``  ``Explainer``, ``explain(params, x, ...)``, ``load(workdir)``
"""
