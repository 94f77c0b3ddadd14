"""Who may do what: the single access table. Pure, no I/O.

Every HTTP route declares either one permission from PERMISSIONS or that it is public (it
authenticates by other means: a provider's signature, a signed link, a feed's own token).
The middleware in warnd.api.auth enforces the declaration; tests/integration/test_roles.py
walks every registered route and checks each role against this table.

The `[metrics] tokens` are for a Prometheus scraper: they act as the pseudo-user
"metrics-token" with the METRICS role, which may read /metrics and nothing else.

The config file's shared `[api] tokens` are for machines only: they act as the pseudo-user
"api-token" with the MACHINE role, which may submit CAP and read summaries that carry no
personal data. Nothing a person decides (a phoned confirmation, a cancel, an approval) may be
done with them: those need a named user, by session or personal token.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.StrEnum):
    DUTY_OFFICER = "duty_officer"  # 值班员: runs the storm
    APPROVER = "approver"  # 带班领导/审核: everything a duty officer does, plus approvals
    AUDITOR = "auditor"  # 审计: reads everything, changes nothing
    ADMIN = "admin"  # 管理员: accounts and system health; not an operator of warnings
    MACHINE = "machine"  # the shared config tokens (pseudo-user "api-token"); never a user's role
    METRICS = "metrics"  # the [metrics] tokens of a Prometheus scraper (pseudo-user "metrics-token")


USER_ROLES = (Role.DUTY_OFFICER, Role.APPROVER, Role.AUDITOR, Role.ADMIN)
MACHINE_ACTOR = "api-token"
METRICS_ACTOR = "metrics-token"

ROLE_LABELS = {
    Role.DUTY_OFFICER: "值班员", Role.APPROVER: "带班领导", Role.AUDITOR: "审计",
    Role.ADMIN: "管理员", Role.MACHINE: "接口令牌", Role.METRICS: "监控令牌",
}


@dataclass(frozen=True)
class Permission:
    label: str  # what it allows, in Chinese (shown on the console's account page)
    roles: frozenset[Role]


_ANY_USER = frozenset(USER_ROLES)
_OPERATORS = frozenset({Role.DUTY_OFFICER, Role.APPROVER})

PERMISSIONS: dict[str, Permission] = {
    "console.view": Permission("使用值班台", _ANY_USER),
    "alerts.read": Permission("查看预警及统计", _ANY_USER | {Role.MACHINE}),
    "alerts.submit": Permission("提交 CAP 预警", _OPERATORS | {Role.MACHINE}),
    "alerts.compose": Permission("编写发布预警", _OPERATORS),
    "alerts.approve": Permission("审核预警与解除", frozenset({Role.APPROVER})),
    "alerts.cancel": Permission("解除预警", _OPERATORS),
    "calls.read": Permission("查看叫应名单（含电话）", _ANY_USER),
    "calls.ack": Permission("登记电话叫应", _OPERATORS),
    "feeds.read": Permission("查看数据源状态", _ANY_USER | {Role.MACHINE}),
    "reports.read": Permission("查看和导出统计报表", _ANY_USER),
    "users.manage": Permission("管理账户", frozenset({Role.ADMIN})),
    # Residents' numbers are personal information: masked for everyone but these roles.
    "public.read": Permission("查看公众名单与覆盖率（号码脱敏）", _ANY_USER),
    "public.manage": Permission("登记公众订阅与退订", _OPERATORS),
    "public.phones": Permission("查看和导出公众完整号码", frozenset({Role.APPROVER, Role.ADMIN})),
    # GET /metrics (docs/operations.md, "Metrics"): queue depths and counts, no personal data.
    "metrics.read": Permission("读取运行指标", frozenset({Role.ADMIN, Role.AUDITOR, Role.METRICS})),
}


def allowed(role: Role | str, permission: str) -> bool:
    """Unknown permissions allow nobody (a typo in a declaration fails closed)."""
    p = PERMISSIONS.get(permission)
    return p is not None and role in p.roles


def role_label(role: str) -> str:
    try:
        return ROLE_LABELS[Role(role)]
    except ValueError:
        return role


def permissions_of(role: Role | str) -> list[str]:
    return [name for name, p in PERMISSIONS.items() if role in p.roles]
