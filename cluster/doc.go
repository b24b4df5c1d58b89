// Package cluster makes several wsactor nodes one protoactor-go cluster, with
// Redis holding membership and the shared directory.
//
// A node's configuration is a Config, read from cluster.yaml (documented at
// the repository root) by Load: built-in defaults, then the file, then
// environment variables (WSACTOR_REDIS_ADDR overrides redis.addr), then
// command-line flags registered by RegisterFlags (-redis-addr). Load
// validates the result, so a bad configuration is an error naming the field
// before anything starts; Config.PingRedis then tells whether Redis is
// reachable with those settings.
package cluster
