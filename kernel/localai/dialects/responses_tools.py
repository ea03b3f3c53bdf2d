"""The Responses request's ``tools`` and ``tool_choice`` as chat tools, for coding agents such as
Codex that send more than function tools.

- ``function`` tools are offered as they are.
- ``namespace`` tools (a group of functions; Codex sends its MCP servers' tools this way) offer
  each function as a chat function named ``<namespace>__<function>`` (just ``<namespace><function>``
  when the namespace already ends in ``__``, as Codex's ``mcp__server__`` do). A call of that name
  comes back as a ``function_call`` item with the function's own ``name`` and its ``namespace``,
  the way OpenAI returns it; such an item in ``input`` maps back to the joined name. The group's
  functions are read from ``tools`` (OpenAI's shape) or ``functions``.
- Every other tool type is one this server cannot run or return: hosted tools (``web_search``,
  ``file_search``, ``computer_use_preview``, ``code_interpreter``, ``image_generation``, ``mcp``,
  ``tool_search``, ...) and client tools with their own call items (``custom``, ``local_shell``,
  ``shell``, ``apply_patch``). They are not offered to the model; the response names them in the
  ``X-LocalAI-Tools-Dropped`` header (``type`` or ``type:name``, comma-separated) and the server
  logs them. A ``tool_choice`` that requires one of them is a 400 naming it.
- ``tool_choice: {"type": "allowed_tools", "mode", "tools"}`` keeps only the listed function and
  namespace tools (the others listed are ignored, as they are not offered) and chooses ``mode``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadRequest
from . import responses_wire as wire

log = logging.getLogger("localai.dialects")
DROPPED_HEADER = "X-LocalAI-Tools-Dropped"
CHOICE_STRINGS = {"auto", "none", "required"}


def joined(namespace: str, name: str) -> str:
    """The chat function name offered for ``name`` in ``namespace``."""
    return f"{namespace}{name}" if namespace.endswith("__") else f"{namespace}__{name}"


def chat_function(tool: wire.Tool | wire.NamespaceFunction, name: str) -> dict[str, Any]:
    function = {"name": name, **{k: getattr(tool, k) for k in ("description", "parameters", "strict")
                                 if getattr(tool, k) is not None}}
    return {"type": "function", "function": function}


@dataclass
class ToolPlan:
    """What the model is offered and how its calls map back to the client's tools."""

    tools: list[dict[str, Any]] = field(default_factory=list)  # chat tools
    names: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # offered → (name, namespace)
    dropped: list[str] = field(default_factory=list)  # the tools not offered, as named in the header

    def offer(self, function: dict[str, Any], name: str, namespace: str | None, where: str) -> None:
        offered = function["function"]["name"]
        if offered in self.names:
            raise BadRequest(f"{where}: the function name {offered!r} is used twice", param=where)
        self.names[offered] = (name, namespace)
        self.tools.append(function)

    def call(self, offered: str) -> dict[str, str]:
        """A model's call of ``offered`` as the client's ``name`` (and ``namespace``)."""
        name, namespace = self.names.get(offered, (offered, None))
        return {"name": name, **({"namespace": namespace} if namespace else {})}

    @property
    def headers(self) -> dict[str, str]:
        return {DROPPED_HEADER: ",".join(self.dropped)} if self.dropped else {}


def label(tool: wire.Tool) -> str:
    return f"{tool.type}:{tool.name}" if tool.name else tool.type


def plan_tools(req: wire.CreateRequest) -> ToolPlan:
    """The chat tools for ``req.tools``; raises :class:`BadRequest` for malformed ones."""
    plan = ToolPlan()
    for i, tool in enumerate(req.tools or ()):
        where = f"tools.{i}"
        if tool.type == "function":
            if not tool.name:
                raise BadRequest(f"{where}.name: a function tool needs a name", param=f"{where}.name")
            plan.offer(chat_function(tool, tool.name), tool.name, None, where)
        elif tool.type == "namespace":
            if not tool.name:
                raise BadRequest(f"{where}.name: a namespace tool needs a name", param=f"{where}.name")
            for j, inner in enumerate(tool.members):
                inner_where = f"{where}.tools.{j}"
                if inner.type != "function":
                    plan.dropped.append(f"{tool.name}.{inner.type}:{inner.name}")
                    continue
                plan.offer(chat_function(inner, joined(tool.name, inner.name)), inner.name, tool.name, inner_where)
        else:
            plan.dropped.append(label(tool))
    if plan.dropped:
        log.info("responses: tools not offered to the model (this server cannot run them): %s",
                 ", ".join(plan.dropped))
    return plan


def chat_tool_choice(req: wire.CreateRequest, plan: ToolPlan) -> str | dict[str, Any] | None:
    """``req.tool_choice`` for the chat body; one that requires a dropped tool is a 400."""
    choice = req.tool_choice
    if choice is None or isinstance(choice, str):
        if isinstance(choice, str) and choice not in CHOICE_STRINGS:
            raise BadRequest(f"tool_choice: must be one of {sorted(CHOICE_STRINGS)} or an object, not {choice!r}",
                             param="tool_choice")
        if choice == "required" and not plan.tools:
            raise BadRequest("tool_choice: 'required' but no tool this server can run was given "
                             f"(not offered: {', '.join(plan.dropped)})", param="tool_choice")
        return choice
    if choice.type == "allowed_tools":
        return allowed(choice, plan)
    if choice.type == "function":
        offered = joined(choice.namespace, choice.name) if choice.namespace else choice.name
        if offered not in plan.names:
            raise BadRequest(f"tool_choice: no function tool named {choice.name!r}"
                             + (f" in namespace {choice.namespace!r}" if choice.namespace else ""),
                             param="tool_choice")
        return {"type": "function", "function": {"name": offered}}
    named = f"{choice.type}:{choice.name}" if choice.name else choice.type
    raise BadRequest(f"tool_choice: requires the tool {named!r}, which this server cannot run "
                     "(it runs function and namespace tools only)", param="tool_choice")


def allowed(choice: wire.ToolChoice, plan: ToolPlan) -> str:
    """``allowed_tools``: the offered tools narrowed to the listed ones; its ``mode`` is the choice."""
    keep: set[str] = set()
    for tool in choice.tools or ():
        if not isinstance(tool, dict) or tool.get("type") not in ("function", "namespace"):
            continue
        name, namespace = tool.get("name"), tool.get("namespace")
        keep |= {offered for offered, (fn, ns) in plan.names.items()
                 if (tool["type"] == "namespace" and ns == name) or (fn == name and ns == namespace)}
    plan.tools = [t for t in plan.tools if t["function"]["name"] in keep]
    plan.names = {k: v for k, v in plan.names.items() if k in keep}
    mode = choice.mode or "auto"
    if mode not in ("auto", "required"):
        raise BadRequest(f"tool_choice.mode: must be 'auto' or 'required', not {mode!r}", param="tool_choice.mode")
    if mode == "required" and not plan.tools:
        raise BadRequest("tool_choice: 'allowed_tools' requires a tool, but none of them is a function or namespace "
                         "tool this server can run", param="tool_choice.tools")
    return mode
