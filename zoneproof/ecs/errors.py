"""ECS error codes the fake returns, with their HTTP status and message.

Codes, statuses and messages are ECS's own, from the error tables of each action's
documentation. The HTTP status of the two dry-run answers (``DRYRUN.SUCCESS``,
``DryRunOperation``) is ours: the documents name the code, not its status.
"""

from __future__ import annotations


class EcsError(Exception):
    """An ECS API error: rendered as ``{RequestId, HostId, Code, Message, Recommend}``."""

    def __init__(self, code: str, message: str | None = None, status: int | None = None):
        known_status, known_message = CATALOG.get(code, (400, code))
        self.code = code
        self.message = message or known_message
        self.status = status or known_status
        super().__init__(f"{self.code}: {self.message}")


class AnswerLost(Exception):
    """The connection closes with nothing sent: the call was carried out and its answer is
    lost (``lose_answer``, the call a ``cut_after`` fault cuts after), or the call is cut
    off before it reaches ECS (``cut_after`` once it has begun)."""


CATALOG: dict[str, tuple[int, str]] = {
    # request and signature
    "MissingParameter": (400, "A mandatory parameter is not supplied."),
    "InvalidParameter": (400, "The specified parameter is not valid."),
    "InvalidAction.NotFound": (404, "Specified api is not found, please check your url and method."),
    "InvalidVersion": (400, "Specified parameter Version is not valid."),
    "UnsupportedHTTPMethod": (400, "This http method is not supported."),
    "MissingAccessKeyId": (400, "AccessKeyId is mandatory for this action."),
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "IncompleteSignature": (400, "The request signature does not conform to Aliyun standards."),
    "SignatureDoesNotMatch": (400, "Specified signature is not matched with our calculation."),
    "InvalidTimeStamp.Format": (400, "Specified time stamp or date value is not well formatted."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
    "Throttling": (400, "Request was denied due to request throttling."),
    # a dry run that passed: StopInstances/StartInstances say DRYRUN.SUCCESS, the singular
    # StopInstance/StartInstance DryRunOperation
    "DRYRUN.SUCCESS": (400, "This request is a dry run request with successful result."),
    "DryRunOperation": (400, "Request validation has been passed with DryRun flag set."),
    # region and zone
    "InvalidRegionId.NotFound": (404, "The specified RegionId does not exist."),
    "InvalidZoneId.NotFound": (404, "The specified zone does not exist."),
    # disks
    "InvalidDiskId.NotFound": (404, "The specified disk does not exist."),
    "InvalidDiskIds.Malformed": (400, "The specified parameter DiskIds is not valid."),
    "InvalidDiskName.Malformed": (400, "Specified disk name is not valid."),
    "InvalidDescription.Malformed": (400, "Specified description is not valid."),
    "InvalidTagKey.Malformed": (400, "The specified Tag.n.Key is not valid."),
    "InvalidTagValue.Malformed": (400, "The specified Tag.n.Value is not valid."),
    "InvalidDataDiskCategory.NotSupported": (403, "The specified disk category is not supported in this zone."),
    "InvalidDataDiskSize.ValueNotSupported": (400, "The specified disk size is not supported for this category."),
    "InvalidPerformanceLevel.Malformed": (400, "The specified PerformanceLevel is not valid."),
    "InvalidDiskSize.TooSmall": (400, "The new size must be larger than the current size."),
    "IdempotentParameterMismatch": (400, "The specified parameter has changed while using an already used clientToken."),
    "IncorrectDiskStatus": (403, "The current status of the disk does not support this operation."),
    "IncorrectDiskStatus.Initializing": (403, "The disk is still being created."),
    "OperationDenied.NoStock": (403, "The requested resource is sold out in the specified zone; try other types of resources or other regions and zones."),
    "ResourcesNotInSameZone": (403, "The specified instance and disk are not in the same zone."),
    "InvalidOperation.MultiAttachLimitExceeded": (403, "The disk is attached to the maximum number of instances."),
    "InstanceDiskLimitExceeded": (403, "The instance has reached its limit of attached disks."),
    # tags and spec changes
    "InvalidResourceType.NotFound": (404, "The ResourceType provided does not exist in our records."),
    "InvalidResourceId.NotFound": (404, "The specified ResourceId is not found in our records."),
    "InvalidTagCount": (400, "The specified tags are beyond the permitted range."),
    "InvalidDiskCategory.NotSupported": (400, "The specified disk category is not supported."),
    "InvalidStatus.DiskNotReady": (403, "The current status of the disk does not support this operation."),
    "NoChangeInDiskCategoryAndPerformanceLevel": (400, "The disk category and performance level are unchanged."),
    "OperationDenied.PerformanceLevelNotMatch": (403, "The disk size does not match the specified performance level."),
    # instances
    "InvalidInstanceId.NotFound": (404, "The specified instance does not exist."),
    "IncorrectInstanceStatus": (403, "The current status of the resource does not support this operation."),
    "InvalidStatus.NotFound": (404, "The specified Status is not found."),
    # the service itself
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    "InternalError": (500, "The request processing has failed due to some unknown error."),
}
