"""The one way to plug anything in (stage types, engines, rewards, the objective's variants).

``Registry``: names to built-ins, with did-you-mean errors; ``load_object``: a user's own as
``package.module:attr`` or ``path/to/file.py:attr``. Defined in ``rewards.plugins`` (rewards is a leaf
package that imports nothing from reasonkit, and uses them too).
"""

from rewards.plugins import PluginNotFound, Registry, load_object

__all__ = ["PluginNotFound", "Registry", "load_object"]
