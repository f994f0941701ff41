"""The two official Alibaba Cloud Python SDKs as clients of a fake ECS, behind one small
interface, so every scenario runs through both signature styles."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from aliyunsdkcore.acs_exception.exceptions import ClientException as V1ClientException
from aliyunsdkcore.acs_exception.exceptions import ServerException as V1ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest

from zoneproof.ecsapi import CloudError, EcsApi, EcsSettings


@dataclass
class ApiError(Exception):
    code: str
    status: int | None
    message: str = ""


class RpcSdk:
    """aliyun-python-sdk-core / aliyun-python-sdk-ecs: RPC style, HMAC-SHA1."""

    name = "aliyun-python-sdk-ecs"

    def __init__(self, endpoint: str, key_id: str, secret: str, region: str):
        # No automatic retries: a test must see each fault the service injects.
        self.client = AcsClient(key_id, secret, region, auto_retry=False, timeout=30)
        self.endpoint, self.region = endpoint, region

    def call(self, action: str, **params) -> dict:
        req = CommonRequest(domain=self.endpoint, version="2014-05-26", action_name=action)
        req.set_protocol_type("http")
        req.set_method("POST")
        for key, value in params.items():
            if key == "Tag":
                for i, tag in enumerate(value, 1):
                    req.add_query_param(f"Tag.{i}.Key", tag["Key"])
                    if "Value" in tag:
                        req.add_query_param(f"Tag.{i}.Value", tag["Value"])
            else:
                req.add_query_param(key, json.dumps(value) if isinstance(value, list) else
                                    str(value).lower() if isinstance(value, bool) else str(value))
        return self.send(req)

    def send(self, req) -> dict:
        """Send a prepared request (a CommonRequest, or the SDK's own class for an action)."""
        try:
            return json.loads(self.client.do_action_with_exception(req))
        except V1ServerException as err:
            raise ApiError(err.get_error_code(), err.get_http_status(), err.get_error_msg()) from None
        except V1ClientException as err:
            raise ApiError(err.get_error_code(), None, err.get_error_msg()) from None


class V3Sdk:
    """alibabacloud-ecs20140526 on alibabacloud-tea-openapi: ACS3-HMAC-SHA256. This is the
    reference driver's own client, with its throttling retries turned off."""

    name = "alibabacloud-ecs20140526"

    def __init__(self, endpoint: str, key_id: str, secret: str, region: str):
        self.cloud = EcsApi(EcsSettings(endpoint, key_id, secret, region), throttle_attempts=1)

    def call(self, action: str, **params) -> dict:
        try:
            return self.cloud.call(action, **params)
        except CloudError as err:
            raise ApiError(err.code, err.status, err.message) from None


SDKS = (RpcSdk, V3Sdk)


def error_of(fn, *args, **kwargs) -> ApiError:
    """The ApiError a call must raise."""
    with pytest.raises(ApiError) as info:
        fn(*args, **kwargs)
    return info.value


def register_instances(server, instances: dict[str, str]) -> None:
    """Put instance id -> zone pairs into an in-process fake ECS."""
    with server.store.transaction() as db:
        for instance_id, zone in instances.items():
            server.backend.register_instance(db, instance_id, zone)
