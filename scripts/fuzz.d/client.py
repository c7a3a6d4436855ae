"""Call every operation family through a client generated from /api-json.

Run by scripts/fuzz after openapi-python-client generated `troupe_client`
(importable on sys.path); arguments: base URL, ops token. Each call must
answer its documented success status with a parsed, typed model — a schema
the generator dropped shows up here as a response it cannot parse.
"""

import datetime
import sys
import time
import uuid

from troupe_client import AuthenticatedClient, Client
from troupe_client.api.app import info, live, ready
from troupe_client.api.auth import (change_password, end_other_sessions, end_session, forgot_password, jwks,
                                    list_sessions, login, logout, refresh, resend_verification, reset_password,
                                    signup, verify_email)
from troupe_client.api.jobs import (bulk_jobs, cancel_job, enqueue_job, get_job, get_limits, get_pauses,
                                    job_flow, job_result, job_stats, list_jobs, pause, remove_limit, resume,
                                    retry_job, set_limit)
from troupe_client.api.logs import logs
from troupe_client.api.ops import actor, actors, cluster, config, instance_actors
from troupe_client.api.users import profile, update_profile, user_by_id
from troupe_client.models import Acknowledged, EmailVerification, ForgotPassword, PasswordReset, Problem
from troupe_client.models import (ActorNode, BulkRequest, BulkView, ClusterView, ConsoleConfig, EnqueueRequest, FlowView,
                                  EnqueueRequestPayload, InstanceActors, JobList, JobOutcome, JobStats, JobView,
                                  JwkSet, LimitRequest, LimitsView, Live, LoggedOut, LoginRequest, RateView, OwnerProfile, PasswordChange, PasswordChanged,
                                  PauseRequest, PausesView, ProfileUpdate, PublicProfile, Readiness, ServiceInfo,
                                  SessionsEnded, SignupRequest, TokenPair)

base, ops_token = sys.argv[1], sys.argv[2]
failures = []


def check(name, response, status, model):
    """The call answered `status` with a `model` the client parsed."""
    ok = response.status_code == status and isinstance(response.parsed, model)
    print(f"client: {'ok  ' if ok else 'FAIL'} {name}: {response.status_code} {type(response.parsed).__name__}")
    if not ok:
        failures.append(f"{name}: {response.status_code} {response.content[:300]!r}")
    return response.parsed


anonymous = Client(base_url=base)
ops = AuthenticatedClient(base_url=base, token=ops_token)

check("info", info.sync_detailed(client=anonymous), 200, ServiceInfo)
check("live", live.sync_detailed(client=anonymous), 200, Live)
check("ready", ready.sync_detailed(client=anonymous), 200, Readiness)

email = f"client-{uuid.uuid4().hex[:12]}@example.com"
password = "orbit lantern passphrase 42"
pair = check("signup", signup.sync_detailed(
    client=anonymous, body=SignupRequest(email=email, name="Generated Client", password=password)), 201, TokenPair)
pair = check("login", login.sync_detailed(
    client=anonymous, body=LoginRequest(email=email, password=password)), 200, TokenPair) or pair
user = AuthenticatedClient(base_url=base, token=pair.access_token if pair else "")
me = check("profile", profile.sync_detailed(client=user), 200, OwnerProfile)
check("update_profile", update_profile.sync_detailed(client=user, body=ProfileUpdate(name="Renamed")), 200,
      OwnerProfile)
if me:
    check("user_by_id", user_by_id.sync_detailed(me.id, client=anonymous), 200, PublicProfile)
pair = check("refresh", refresh.sync_detailed(
    client=AuthenticatedClient(base_url=base, token=pair.refresh_token if pair else "")), 200, TokenPair)
current = AuthenticatedClient(base_url=base, token=pair.access_token if pair else "")
listed = check("list_sessions", list_sessions.sync_detailed(client=current), 200, list) or []
for session in listed:
    if not session.current:  # the sign-up's session
        check("end_session", end_session.sync_detailed(session.id, client=current), 204, type(None))
check("end_other_sessions", end_other_sessions.sync_detailed(client=current), 200, SessionsEnded)
check("resend_verification", resend_verification.sync_detailed(client=current), 202, Acknowledged)
check("forgot_password", forgot_password.sync_detailed(client=anonymous, body=ForgotPassword(email=email)), 202,
      Acknowledged)
# The tokens are mailed: a made-up one gets the one documented refusal.
made_up = "A" * 43
check("reset_password (made-up token)", reset_password.sync_detailed(client=anonymous, body=PasswordReset(
    token=made_up, password="lantern orbit passphrase 44")), 400, Problem)
check("verify_email (made-up token)", verify_email.sync_detailed(
    client=anonymous, body=EmailVerification(token=made_up)), 400, Problem)
check("change_password", change_password.sync_detailed(client=current, body=PasswordChange(
    current_password=password, new_password="lantern orbit passphrase 43")), 200, PasswordChanged)
check("logout", logout.sync_detailed(
    client=AuthenticatedClient(base_url=base, token=pair.access_token if pair else "")), 200, LoggedOut)

held = check("enqueue_job", enqueue_job.sync_detailed(client=ops, body=EnqueueRequest(
    type_="noop", payload=EnqueueRequestPayload.from_dict({"from": "client"}), delay="1h")), 201, JobView)
if held:
    check("get_job", get_job.sync_detailed(held.id, client=ops), 200, JobView)
    check("cancel_job", cancel_job.sync_detailed(held.id, client=ops), 200, JobView)
# A `sleep` job whose payload is not {"ms": N} fails for good at once: one to retry.
doomed = check("enqueue_job (to fail)", enqueue_job.sync_detailed(client=ops, body=EnqueueRequest(
    type_="sleep", payload=EnqueueRequestPayload.from_dict({"ms": "soon"}))), 201, JobView)
deadline = time.monotonic() + 30
while doomed and doomed.status != "failed" and time.monotonic() < deadline:
    time.sleep(0.1)
    doomed = get_job.sync(doomed.id, client=ops) or doomed
if doomed:
    check("retry_job", retry_job.sync_detailed(doomed.id, client=ops), 200, JobView)
check("list_jobs", list_jobs.sync_detailed(client=ops, type_="noop", limit=10), 200, JobList)
check("job_stats", job_stats.sync_detailed(client=ops), 200, JobStats)
check("pause", pause.sync_detailed(client=ops, body=PauseRequest(type_="noop")), 200, PausesView)
check("get_pauses", get_pauses.sync_detailed(client=ops), 200, PausesView)
check("resume", resume.sync_detailed(client=ops, body=PauseRequest(type_="noop")), 200, PausesView)
check("bulk_jobs", bulk_jobs.sync_detailed(client=ops, body=BulkRequest(action="cancel", dry_run=True)), 200,
      BulkView)
check("set_limit", set_limit.sync_detailed("sleep", client=ops, body=LimitRequest(
    concurrency=4, rate=RateView(limit=100, period="1m"))), 200, LimitsView)
check("get_limits", get_limits.sync_detailed(client=ops), 200, LimitsView)
check("remove_limit", remove_limit.sync_detailed("sleep", client=ops), 200, LimitsView)
quick = check("enqueue_job (to wait for)", enqueue_job.sync_detailed(client=ops, body=EnqueueRequest(
    type_="noop", payload=EnqueueRequestPayload.from_dict({}))), 201, JobView)
if quick:
    check("enqueue_job (dependent)", enqueue_job.sync_detailed(client=ops, body=EnqueueRequest(
        type_="noop", payload=EnqueueRequestPayload.from_dict({}), depends_on=[quick.id])), 201, JobView)
    check("job_flow", job_flow.sync_detailed(quick.id, client=ops), 200, FlowView)
    check("job_result", job_result.sync_detailed(quick.id, client=ops, wait="5s"), 200, JobOutcome)
check("jwks", jwks.sync_detailed(client=anonymous), 200, JwkSet)

tree = check("actors", actors.sync_detailed(client=ops), 200, ActorNode)
check("actor", actor.sync_detailed("user", client=ops), 200, ActorNode)
fleet = check("cluster", cluster.sync_detailed(client=ops), 200, ClusterView)
if fleet:
    check("instance_actors", instance_actors.sync_detailed(fleet.self_, client=ops), 200, InstanceActors)
check("config", config.sync_detailed(client=ops), 200, ConsoleConfig)
today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
check("logs", logs.sync_detailed(client=ops, type_="system", date=today, tail=5), 200, str)

if failures:
    sys.exit("client: calls through the generated client failed:\n  " + "\n  ".join(failures))
print("client: every operation family answered through the generated client")
