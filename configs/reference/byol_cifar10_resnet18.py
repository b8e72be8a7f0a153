r"""BYOL on CIFAR-10 with ResNet-18, solo-learn's recipe (1000 epochs, batch 256, LARS).

  python -m ssl_jax.main --config configs/reference/byol_cifar10_resnet18.py --workdir /tmp/byol_c10

Published (solo-learn model zoo, linear top-1 after 1000 epochs): 92.58.
Until the tfds source lands the data is synthetic at CIFAR-10's shape (the recipe's speed and
memory are real, its accuracy is not); tests build it and run a few steps.
"""

from ssl_jax.recipes import cifar10_resnet18_config


def get_config():
  return cifar10_resnet18_config("byol", learning_rate=1.0, weight_decay=1e-5, base_momentum=0.99,
                                 projector_hidden_dim=4096, projector_dim=256,
                                 predictor_hidden_dim=4096)
