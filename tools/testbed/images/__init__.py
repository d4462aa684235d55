"""Container images for the test bed, built on this machine without any registry.

    ensure(name) -> Built            a recipe's image (tools/testbed/images/recipes.py), cached by content
    build_static(ref, files, entrypoint, env=None) -> Path   a scratch image of a few files
    import_into(address, archives)   into containerd (namespace k8s.io) under the exact refs
    missing(address, refs) -> list   refs that containerd does not have

See docs/images.md.
"""
from .api import Built, build_static, cached, ensure, images_dir, import_into, keys, missing  # noqa: F401
from .recipes import RECIPES, Maven, Recipe  # noqa: F401
