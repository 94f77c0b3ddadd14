"""The access table's decisions that the county's rules depend on."""

from __future__ import annotations

import pytest

from warnd.auth.permissions import (
    PERMISSIONS,
    USER_ROLES,
    Role,
    allowed,
    permissions_of,
    role_label,
)

HUMAN_ACTIONS = ("calls.ack", "alerts.cancel", "alerts.compose", "alerts.approve")
CHANGES = ("alerts.submit", *HUMAN_ACTIONS, "users.manage")


@pytest.mark.parametrize("permission", HUMAN_ACTIONS)
def test_no_human_action_with_the_shared_machine_token(permission: str) -> None:
    assert not allowed(Role.MACHINE, permission)


def test_machine_token_sees_no_personal_data() -> None:
    assert not allowed(Role.MACHINE, "calls.read")  # names and phone numbers of officials
    assert not allowed(Role.MACHINE, "console.view")
    assert allowed(Role.MACHINE, "alerts.submit") and allowed(Role.MACHINE, "alerts.read")


@pytest.mark.parametrize("permission", CHANGES)
def test_auditor_reads_and_changes_nothing(permission: str) -> None:
    assert not allowed(Role.AUDITOR, permission)
    assert allowed(Role.AUDITOR, "calls.read") and allowed(Role.AUDITOR, "reports.read")


def test_duty_officer_runs_the_storm_and_only_an_approver_approves() -> None:
    for p in ("alerts.compose", "alerts.cancel", "calls.ack", "alerts.submit"):
        assert allowed(Role.DUTY_OFFICER, p) and allowed(Role.APPROVER, p)
    assert [r for r in Role if allowed(r, "alerts.approve")] == [Role.APPROVER]


def test_admin_manages_accounts_but_does_not_operate_warnings() -> None:
    assert [r for r in Role if allowed(r, "users.manage")] == [Role.ADMIN]
    for p in HUMAN_ACTIONS:
        assert not allowed(Role.ADMIN, p)


def test_unknown_permission_or_role_allows_nobody() -> None:
    assert not any(allowed(r, "calls.ackk") for r in Role)
    assert not allowed("superuser", "console.view")


def test_every_user_role_has_a_label_and_uses_the_console() -> None:
    for role in USER_ROLES:
        assert role_label(role) != role.value
        assert "console.view" in permissions_of(role)
    assert all(p.label for p in PERMISSIONS.values())
