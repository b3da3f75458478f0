"""Actions the add-on made (Transfer Motion), so that Clear can take them back without touching the user's.

A transferred action carries custom properties: ``sa3df_target`` (the armature it was made for) and
``sa3df_previous`` (the action that armature played before, restored when the transferred one goes) and
``sa3df_name`` (its own name: a copy the user makes carries the properties but not the name, so it stays theirs).
"""

from __future__ import annotations

import bpy

TARGET = "sa3df_target"
PREVIOUS = "sa3df_previous"
NAME = "sa3df_name"


def mark_transferred(action, armature, previous) -> None:
    """Record that ``action`` was made for ``armature``, which played ``previous`` (or None) before."""
    action[TARGET] = armature.name
    action[PREVIOUS] = previous.name if previous is not None else ""
    action[NAME] = action.name


def transferred_actions(armature) -> list:
    """The actions the add-on made for ``armature`` (by name), oldest first."""
    return [a for a in bpy.data.actions if a.get(TARGET) == armature.name and a.get(NAME) == a.name]


def remove_transferred_actions(armature) -> int:
    """Unassign and delete every action the add-on made for ``armature``; the action it played before the
    first of them becomes active again (if it still exists). The user's actions are never touched.
    Returns how many were removed."""
    ours = transferred_actions(armature)
    anim = armature.animation_data
    if anim is not None and anim.action in ours:
        previous = _first_previous(ours, anim.action)
        anim.action = previous
        if previous is not None and hasattr(anim, "action_slot") and getattr(previous, "slots", None):
            anim.action_slot = previous.slots[0]
    for action in ours:
        bpy.data.actions.remove(action)
    return len(ours)


def _first_previous(ours: list, current):
    """The user's action that was playing before ``current`` (following a chain of transfers back)."""
    seen, action = set(), current
    while action is not None and action in ours and action.name not in seen:
        seen.add(action.name)
        action = bpy.data.actions.get(action.get(PREVIOUS, ""))
    return action if action not in ours else None
