"""Kubernetes platform client: the only package that imports kr8s.

``client`` (KubeClient: raw verbs, error translation), ``resources`` (kinds and status models),
``status`` (the StepRun status protocol), ``errors`` (translation). Import the module you need:
``from bubu._k8s import status``.
"""
