/**
 * etcd's v3 gRPC protocol, trimmed to what the Store uses, as text: nothing but .ts files ships.
 *
 * Field numbers and names are those of etcd's `api/etcdserverpb/rpc.proto` and `api/mvccpb/kv.proto`
 * (3.4 and later; the wire format is what matters, so the mvccpb messages live in the same package
 * here). Only the fields unum reads or writes are declared: protobuf skips unknown fields, so a
 * newer etcd's extra fields are harmless. Services keep etcd's package name (`etcdserverpb`),
 * which is part of each method's path on the wire.
 */
import * as grpc from '@grpc/grpc-js';
import { fromJSON } from '@grpc/proto-loader';
import protobuf from 'protobufjs';

export const ETCD_PROTO = `
syntax = "proto3";
package etcdserverpb;

message KeyValue {
  bytes key = 1;
  int64 create_revision = 2;
  int64 mod_revision = 3;
  int64 version = 4;
  bytes value = 5;
  int64 lease = 6;
}

message Event {
  enum EventType { PUT = 0; DELETE = 1; }
  EventType type = 1;
  KeyValue kv = 2;
  KeyValue prev_kv = 3;
}

message ResponseHeader {
  uint64 cluster_id = 1;
  uint64 member_id = 2;
  int64 revision = 3;
  uint64 raft_term = 4;
}

message RangeRequest {
  bytes key = 1;
  bytes range_end = 2;
  int64 limit = 3;
  int64 revision = 4;
  bool serializable = 7;
  bool keys_only = 8;
  bool count_only = 9;
}
message RangeResponse {
  ResponseHeader header = 1;
  repeated KeyValue kvs = 2;
  bool more = 3;
  int64 count = 4;
}

message PutRequest {
  bytes key = 1;
  bytes value = 2;
  int64 lease = 3;
  bool prev_kv = 4;
}
message PutResponse {
  ResponseHeader header = 1;
  KeyValue prev_kv = 2;
}

message DeleteRangeRequest {
  bytes key = 1;
  bytes range_end = 2;
  bool prev_kv = 3;
}
message DeleteRangeResponse {
  ResponseHeader header = 1;
  int64 deleted = 2;
  repeated KeyValue prev_kvs = 3;
}

message RequestOp {
  oneof request {
    RangeRequest request_range = 1;
    PutRequest request_put = 2;
    DeleteRangeRequest request_delete_range = 3;
    TxnRequest request_txn = 4;
  }
}
message ResponseOp {
  oneof response {
    RangeResponse response_range = 1;
    PutResponse response_put = 2;
    DeleteRangeResponse response_delete_range = 3;
    TxnResponse response_txn = 4;
  }
}

message Compare {
  enum CompareResult { EQUAL = 0; GREATER = 1; LESS = 2; NOT_EQUAL = 3; }
  enum CompareTarget { VERSION = 0; CREATE = 1; MOD = 2; VALUE = 3; LEASE = 4; }
  CompareResult result = 1;
  CompareTarget target = 2;
  bytes key = 3;
  oneof target_union {
    int64 version = 4;
    int64 create_revision = 5;
    int64 mod_revision = 6;
    bytes value = 7;
    int64 lease = 8;
  }
  bytes range_end = 64;
}

message TxnRequest {
  repeated Compare compare = 1;
  repeated RequestOp success = 2;
  repeated RequestOp failure = 3;
}
message TxnResponse {
  ResponseHeader header = 1;
  bool succeeded = 2;
  repeated ResponseOp responses = 3;
}

message CompactionRequest {
  int64 revision = 1;
  bool physical = 2;
}
message CompactionResponse {
  ResponseHeader header = 1;
}

message WatchRequest {
  oneof request_union {
    WatchCreateRequest create_request = 1;
    WatchCancelRequest cancel_request = 2;
  }
}
message WatchCreateRequest {
  bytes key = 1;
  bytes range_end = 2;
  int64 start_revision = 3;
  bool progress_notify = 4;
  bool prev_kv = 6;
  int64 watch_id = 7;
  bool fragment = 8;
}
message WatchCancelRequest {
  int64 watch_id = 1;
}
message WatchResponse {
  ResponseHeader header = 1;
  int64 watch_id = 2;
  bool created = 3;
  bool canceled = 4;
  int64 compact_revision = 5;
  string cancel_reason = 6;
  bool fragment = 7;
  repeated Event events = 11;
}

message LeaseGrantRequest {
  int64 TTL = 1;
  int64 ID = 2;
}
message LeaseGrantResponse {
  ResponseHeader header = 1;
  int64 ID = 2;
  int64 TTL = 3;
  string error = 4;
}
message LeaseRevokeRequest {
  int64 ID = 1;
}
message LeaseRevokeResponse {
  ResponseHeader header = 1;
}
message LeaseKeepAliveRequest {
  int64 ID = 1;
}
message LeaseKeepAliveResponse {
  ResponseHeader header = 1;
  int64 ID = 2;
  int64 TTL = 3;
}
message LeaseTimeToLiveRequest {
  int64 ID = 1;
  bool keys = 2;
}
message LeaseTimeToLiveResponse {
  ResponseHeader header = 1;
  int64 ID = 2;
  int64 TTL = 3;
  int64 grantedTTL = 4;
  repeated bytes keys = 5;
}

message StatusRequest {}
message StatusResponse {
  ResponseHeader header = 1;
  string version = 2;
  int64 dbSize = 3;
  uint64 leader = 4;
  uint64 raftIndex = 5;
  uint64 raftTerm = 6;
}

message AuthenticateRequest {
  string name = 1;
  string password = 2;
}
message AuthenticateResponse {
  ResponseHeader header = 1;
  string token = 2;
}

service KV {
  rpc Range(RangeRequest) returns (RangeResponse);
  rpc Put(PutRequest) returns (PutResponse);
  rpc DeleteRange(DeleteRangeRequest) returns (DeleteRangeResponse);
  rpc Txn(TxnRequest) returns (TxnResponse);
  rpc Compact(CompactionRequest) returns (CompactionResponse);
}
service Watch {
  rpc Watch(stream WatchRequest) returns (stream WatchResponse);
}
service Lease {
  rpc LeaseGrant(LeaseGrantRequest) returns (LeaseGrantResponse);
  rpc LeaseRevoke(LeaseRevokeRequest) returns (LeaseRevokeResponse);
  rpc LeaseKeepAlive(stream LeaseKeepAliveRequest) returns (stream LeaseKeepAliveResponse);
  rpc LeaseTimeToLive(LeaseTimeToLiveRequest) returns (LeaseTimeToLiveResponse);
}
service Maintenance {
  rpc Status(StatusRequest) returns (StatusResponse);
}
service Auth {
  rpc Authenticate(AuthenticateRequest) returns (AuthenticateResponse);
}
`;

/** The constructors of etcd's service clients. */
export interface EtcdServices {
  KV: grpc.ServiceClientConstructor;
  Watch: grpc.ServiceClientConstructor;
  Lease: grpc.ServiceClientConstructor;
  Maintenance: grpc.ServiceClientConstructor;
  Auth: grpc.ServiceClientConstructor;
}

let loaded: EtcdServices | undefined;

/**
 * The service constructors, parsed once. int64 fields arrive as decimal strings (revisions and
 * lease ids are converted with a range check, see codec.ts), bytes as Buffers, enums as names,
 * absent fields as their defaults.
 */
export function etcdServices(): EtcdServices {
  if (loaded !== undefined) return loaded;
  const root = protobuf.parse(ETCD_PROTO, { keepCase: true }).root;
  const definition = fromJSON(root.toJSON(), {
    keepCase: true,
    longs: String,
    enums: String,
    bytes: Buffer,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition)['etcdserverpb'] as unknown as EtcdServices;
  loaded = pkg;
  return pkg;
}
