"""The AgentDojo suites' functions as tools, one list per suite (an agent spec names one with
``source: tools.py:banking``); they act on the scenario the evaluation writes to each run's workspace."""

from __future__ import annotations

from shopfloor.evals import agentdojo_tools

workspace = agentdojo_tools("workspace")
travel = agentdojo_tools("travel")
banking = agentdojo_tools("banking")
slack = agentdojo_tools("slack")
