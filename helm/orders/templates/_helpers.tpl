{{/*
Chart name, shortened to 63 characters because some Kubernetes name fields are limited to that
(DNS-1123 labels).
*/}}
{{- define "orders.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the prefix of every resource. Truncated to 52 characters so suffixes such as
"-invalidator" and StatefulSet pod/PVC names stay within 63.
*/}}
{{- define "orders.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart label value: name-version. */}}
{{- define "orders.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of one component. Call with (dict "ctx" $ "component" "api"); the component keeps the
API, invalidator, Job, MySQL and Redis pods apart for Services and NetworkPolicies.
*/}}
{{- define "orders.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orders.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component's resources: selector labels plus version, chart and manager. */}}
{{- define "orders.labels" -}}
helm.sh/chart: {{ include "orders.chart" .ctx }}
{{ include "orders.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: orders
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
An image reference from registry, repository, tag and digest: a digest wins over the tag (the tag is
then only a reminder for humans), an empty registry leaves the repository as given. Call with
(dict "image" .Values.mysql.image "defaultTag" "8.4").
*/}}
{{- define "orders.imageRef" -}}
{{- $repository := .image.repository }}
{{- with .image.registry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}
{{- end }}
{{- if .image.digest }}
{{- printf "%s@%s" $repository .image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (.image.tag | default .defaultTag | toString) }}
{{- end }}
{{- end }}

{{/* The orders-service image; the tag defaults to the chart's appVersion. */}}
{{- define "orders.image" -}}
{{- include "orders.imageRef" (dict "image" .Values.image "defaultTag" .Chart.AppVersion) }}
{{- end }}

{{/*
Labels of the MySQL and Redis pod templates: only what stays the same across app-only upgrades
(selector labels, part-of, managed-by) plus the version of their own image. helm.sh/chart and the
chart's appVersion are left out on purpose: a pod template that carries them changes on every chart
bump, and the StatefulSet then restarts the database for nothing. Call with
(dict "ctx" $ "component" "mysql" "image" .Values.mysql.image).
*/}}
{{- define "orders.stableLabels" -}}
{{ include "orders.selectorLabels" . }}
app.kubernetes.io/version: {{ .image.tag | toString | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: orders
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
One ServiceAccount per component (api, invalidator, seed, mysql, redis), so a cloud workload identity
or an audit log can tell them apart; none of them mounts its token. Call with
(dict "ctx" $ "component" "api"). With serviceAccount.create=false every pod uses serviceAccount.name
(or `default`).
*/}}
{{- define "orders.serviceAccountName" -}}
{{- if .ctx.Values.serviceAccount.create }}
{{- if eq .component "api" }}
{{- default (include "orders.fullname" .ctx) .ctx.Values.serviceAccount.name }}
{{- else }}
{{- printf "%s-%s" (default (include "orders.fullname" .ctx) .ctx.Values.serviceAccount.name) .component }}
{{- end }}
{{- else }}
{{- default "default" .ctx.Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Names of the in-release MySQL and Redis (StatefulSet, headless Service and DNS host). */}}
{{- define "orders.mysql.fullname" -}}
{{- printf "%s-mysql" (include "orders.fullname" .) }}
{{- end }}
{{- define "orders.redis.fullname" -}}
{{- printf "%s-redis" (include "orders.fullname" .) }}
{{- end }}

{{/*
The ClusterIP Services the apps connect to. The headless Services (named like the StatefulSets, whose
serviceName is immutable) publish DNS only once the pod is Ready, so a client that starts early gets
"unknown host" (MySQL client error 2005) instead of a connection it can retry; a ClusterIP Service
has a DNS record from the moment it exists.
*/}}
{{- define "orders.mysql.host" -}}
{{- printf "%s-primary" (include "orders.mysql.fullname" .) }}
{{- end }}
{{- define "orders.redis.host" -}}
{{- printf "%s-primary" (include "orders.redis.fullname" .) }}
{{- end }}

{{/* Where MySQL is: the in-release StatefulSet or externalDatabase. */}}
{{- define "orders.database.host" -}}
{{- if .Values.mysql.enabled }}
{{- include "orders.mysql.host" . }}
{{- else }}
{{- required "externalDatabase.host is required when mysql.enabled=false" .Values.externalDatabase.host }}
{{- end }}
{{- end }}
{{- define "orders.database.port" -}}
{{- ternary 3306 .Values.externalDatabase.port .Values.mysql.enabled }}
{{- end }}
{{- define "orders.database.name" -}}
{{- ternary .Values.mysql.database .Values.externalDatabase.database .Values.mysql.enabled }}
{{- end }}
{{- define "orders.database.user" -}}
{{- ternary .Values.mysql.username .Values.externalDatabase.username .Values.mysql.enabled }}
{{- end }}

{{/*
Secret and key holding each password. A user-supplied existingSecret wins; otherwise the chart's own
Secret (named like the release) holds it.
*/}}
{{- define "orders.database.secretName" -}}
{{- $existing := ternary .Values.mysql.auth.existingSecret .Values.externalDatabase.existingSecret .Values.mysql.enabled }}
{{- default (include "orders.fullname" .) $existing }}
{{- end }}
{{- define "orders.database.secretPasswordKey" -}}
{{- if and (not .Values.mysql.enabled) .Values.externalDatabase.existingSecret }}
{{- .Values.externalDatabase.existingSecretPasswordKey }}
{{- else }}
{{- "mysql-password" }}
{{- end }}
{{- end }}
{{- define "orders.redis.secretName" -}}
{{- $existing := ternary .Values.redis.auth.existingSecret .Values.externalRedis.existingSecret .Values.redis.enabled }}
{{- default (include "orders.fullname" .) $existing }}
{{- end }}
{{- define "orders.redis.secretPasswordKey" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.existingSecret }}
{{- .Values.externalRedis.existingSecretPasswordKey }}
{{- else }}
{{- "redis-password" }}
{{- end }}
{{- end }}

{{/* True (non-empty) when the chart must render its own Secret: some password is not in an existingSecret. */}}
{{- define "orders.secret.needed" -}}
{{- if or (eq (include "orders.database.secretName" .) (include "orders.fullname" .)) (eq (include "orders.redis.secretName" .) (include "orders.fullname" .)) }}true{{- end }}
{{- end }}

{{/*
The passwords the values give, as a map key -> password, for the keys of the chart's Secret: the
in-release MySQL's and Redis' non-empty auth values, an external database's or Redis' password
(empty included: no password). Only for stores whose passwords are not in an existingSecret.
*/}}
{{- define "orders.secret.given" -}}
{{- $given := dict }}
{{- $fullname := include "orders.fullname" . }}
{{- if eq (include "orders.database.secretName" .) $fullname }}
{{- if .Values.mysql.enabled }}
{{- range $role := list "root" "api" "invalidator" "migrate" }}
{{- with index $.Values.mysql.auth (printf "%sPassword" $role) }}
{{- $_ := set $given (printf "mysql-%s-password" $role) (toString .) }}
{{- end }}
{{- end }}
{{- else }}
{{- $_ := set $given "mysql-password" (toString .Values.externalDatabase.password) }}
{{- with .Values.externalDatabase.replicaPassword }}
{{- $_ := set $given "mysql-replica-password" (toString .) }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq (include "orders.redis.secretName" .) $fullname }}
{{- if .Values.redis.enabled }}
{{- range $key, $param := dict "redis-password" "password" "redis-api-password" "apiPassword" "redis-invalidator-password" "invalidatorPassword" "redis-sentinel-password" "sentinelPassword" }}
{{- with index $.Values.redis.auth $param }}
{{- $_ := set $given $key (toString .) }}
{{- end }}
{{- end }}
{{- else }}
{{- $_ := set $given "redis-password" (toString .Values.externalRedis.password) }}
{{- if and (eq .Values.externalRedis.topology "sentinel") .Values.externalRedis.sentinel.password }}
{{- $_ := set $given (include "orders.redis.sentinelPasswordKey" .) (toString .Values.externalRedis.sentinel.password) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $given }}
{{- end }}

{{/* The keys the secrets Job generates when the Secret lacks them: in-release passwords left empty. */}}
{{- define "orders.secret.generated" -}}
{{- $keys := list }}
{{- $fullname := include "orders.fullname" . }}
{{- $given := include "orders.secret.given" . | fromYaml }}
{{- if and .Values.mysql.enabled (eq (include "orders.database.secretName" .) $fullname) }}
{{- range $role := list "root" "api" "invalidator" "migrate" }}
{{- $keys = append $keys (printf "mysql-%s-password" $role) }}
{{- end }}
{{- end }}
{{- if and .Values.redis.enabled (eq (include "orders.redis.secretName" .) $fullname) }}
{{- $keys = concat $keys (list "redis-password" "redis-api-password" "redis-invalidator-password") }}
{{- if eq .Values.redis.architecture "replication" }}
{{- $keys = append $keys "redis-sentinel-password" }}
{{- end }}
{{- end }}
{{- $missing := list }}
{{- range $keys }}
{{- if not (hasKey $given .) }}
{{- $missing = append $missing . }}
{{- end }}
{{- end }}
{{- toYaml $missing }}
{{- end }}

{{/*
Pod-level security context. The orders pods (uid 10001) take podSecurityContext from the values;
MySQL and Redis (uid 999, the user their official images own files with) a fixed restricted one.
openshift=true drops runAsUser/runAsGroup/fsGroup everywhere: OpenShift's restricted-v2 SCC assigns
its own UID range and refuses pods that name another. Call with (dict "ctx" $ "uid" 10001).
*/}}
{{- define "orders.podSecurityContext" -}}
{{- $sc := dict }}
{{- if eq (int .uid) 10001 }}
{{- $sc = deepCopy .ctx.Values.podSecurityContext }}
{{- else }}
{{- $sc = dict "runAsNonRoot" true "runAsUser" .uid "runAsGroup" .uid "fsGroup" .uid "seccompProfile" (dict "type" "RuntimeDefault") }}
{{- end }}
{{- if .ctx.Values.openshift }}
{{- $_ := unset $sc "runAsUser" }}
{{- $_ = unset $sc "runAsGroup" }}
{{- $_ = unset $sc "fsGroup" }}
{{- end }}
{{- toYaml $sc }}
{{- end }}

{{/* Container-level security context; same rules as the pod-level one. */}}
{{- define "orders.containerSecurityContext" -}}
{{- $sc := deepCopy .ctx.Values.containerSecurityContext }}
{{- if ne (int .uid) 10001 }}
{{- $_ := set $sc "runAsUser" .uid }}
{{- $_ = set $sc "runAsGroup" .uid }}
{{- end }}
{{- if .ctx.Values.openshift }}
{{- $_ := unset $sc "runAsUser" }}
{{- $_ = unset $sc "runAsGroup" }}
{{- end }}
{{- toYaml $sc }}
{{- end }}

{{/*
Seconds the API pod may take to stop: the preStop sleep, the service's own drain delay and gunicorn's
graceful timeout must all fit, with 10 seconds to spare. An explicit value that is too small fails.
*/}}
{{- define "orders.terminationGracePeriodSeconds" -}}
{{- $needed := add .Values.preStopSleepSeconds .Values.config.shutdownDelay .Values.config.gracefulTimeout }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $needed 10 }}
{{- else if le (int .Values.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds=%v must exceed preStopSleepSeconds + config.shutdownDelay + config.gracefulTimeout = %v" .Values.terminationGracePeriodSeconds $needed) }}
{{- else }}
{{- .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
Database user and password key of one role. The in-release MySQL has a user per role (least
privilege): api = SELECT; invalidator = replication plus SELECT and the heartbeat table; migrate =
DDL and DML on the database (the migrate init containers and the seed Job). An external MySQL uses
externalDatabase.username for every role unless externalDatabase.users names one per role.
*/}}
{{- define "orders.database.roleUser" -}}
{{- if .ctx.Values.mysql.enabled }}
{{- index .ctx.Values.mysql.users .role }}
{{- else }}
{{- default .ctx.Values.externalDatabase.username (index (.ctx.Values.externalDatabase.users | default dict) .role) }}
{{- end }}
{{- end }}
{{- define "orders.database.rolePasswordKey" -}}
{{- if .ctx.Values.mysql.enabled }}
{{- printf "mysql-%s-password" .role }}
{{- else }}
{{- include "orders.database.secretPasswordKey" .ctx }}
{{- end }}
{{- end }}
{{- define "orders.redis.roleUser" -}}
{{- if .ctx.Values.redis.enabled }}
{{- index .ctx.Values.redis.users (ternary "invalidator" "api" (eq .role "invalidator")) }}
{{- else }}
{{- .ctx.Values.externalRedis.username }}
{{- end }}
{{- end }}
{{- define "orders.redis.rolePasswordKey" -}}
{{- if .ctx.Values.redis.enabled }}
{{- printf "redis-%s-password" (ternary "invalidator" "api" (eq .role "invalidator")) }}
{{- else }}
{{- include "orders.redis.secretPasswordKey" .ctx }}
{{- end }}
{{- end }}

{{/* Where the TLS CA bundles are mounted in the orders containers. */}}
{{- define "orders.tls.mysqlCA" -}}/etc/orders/tls/mysql/ca.crt{{- end }}
{{- define "orders.tls.redisCA" -}}/etc/orders/tls/redis/ca.crt{{- end }}

{{/*
ORDERS_DATABASE_URL of one role, without a password (that comes from the Secret). With tls.mysql
the URL asks PyMySQL to verify the server's certificate and host name against the mounted CA.
*/}}
{{- define "orders.database.roleUrl" -}}
{{- $url := printf "mysql://%s@%s:%v/%s" (include "orders.database.roleUser" . | urlquery) (include "orders.database.host" .ctx) (include "orders.database.port" .ctx) (include "orders.database.name" .ctx) }}
{{- if .ctx.Values.tls.mysql.enabled }}
{{- $url = printf "%s?ssl_ca=%s&ssl_verify_identity=true" $url (include "orders.tls.mysqlCA" .ctx) }}
{{- end }}
{{- $url }}
{{- end }}

{{/*
How the service reaches Redis: standalone (one server), sentinel (the in-release replication
architecture, or an external Sentinel set) or cluster (an external Redis Cluster).
*/}}
{{- define "orders.redis.topology" -}}
{{- if .Values.redis.enabled }}
{{- ternary "sentinel" "standalone" (eq .Values.redis.architecture "replication") }}
{{- else }}
{{- .Values.externalRedis.topology | default "standalone" }}
{{- end }}
{{- end }}

{{/* The in-release Redis pods' stable DNS names (StatefulSet pod . headless Service), one a line. */}}
{{- define "orders.redis.nodeHosts" -}}
{{- $fullname := include "orders.redis.fullname" . }}
{{- range $i := until (int .Values.redis.replication.nodes) }}
{{ printf "%s-%d.%s.%s.svc" $fullname $i $fullname $.Release.Namespace }}
{{- end }}
{{- end }}

{{/*
host:port[,host:port...] of a Sentinel or cluster URL: the in-release nodes' Sentinels, or
externalRedis.hosts (IPv6 addresses bracketed; a host without a port takes the topology's).
*/}}
{{- define "orders.redis.hostList" -}}
{{- $topology := include "orders.redis.topology" . }}
{{- $items := list }}
{{- if .Values.redis.enabled }}
{{- range (include "orders.redis.nodeHosts" . | trim | splitList "\n") }}
{{- $items = append $items (printf "%s:26379" .) }}
{{- end }}
{{- else }}
{{- $default := ternary 26379 6379 (eq $topology "sentinel") }}
{{- range (required (printf "externalRedis.hosts is required with externalRedis.topology=%s" $topology) .Values.externalRedis.hosts) }}
{{- $host := required "every externalRedis.hosts entry needs a host" .host | toString }}
{{- if contains ":" $host }}{{ $host = printf "[%s]" $host }}{{ end }}
{{- $items = append $items (printf "%s:%v" $host (.port | default $default)) }}
{{- end }}
{{- end }}
{{- join "," $items }}
{{- end }}

{{/* Distinct TCP ports the service dials for Redis (NetworkPolicy egress), one a line. */}}
{{- define "orders.redis.clientPorts" -}}
{{- $topology := include "orders.redis.topology" . }}
{{- $ports := list }}
{{- if .Values.redis.enabled }}
{{- $ports = ternary (list 6379 26379) (list 6379) (eq $topology "sentinel") }}
{{- else }}
{{- if ne $topology "cluster" }}
{{- /* standalone: the server; sentinel: the primary Sentinel names (on externalRedis.port) */}}
{{- $ports = append $ports (int .Values.externalRedis.port) }}
{{- end }}
{{- if ne $topology "standalone" }}
{{- range .Values.externalRedis.hosts }}
{{- $ports = append $ports (int (.port | default (ternary 26379 6379 (eq $topology "sentinel")))) }}
{{- end }}
{{- end }}
{{- end }}
{{- range (uniq $ports) }}
{{ . }}
{{- end }}
{{- end }}

{{/*
ORDERS_REDIS_URL of one role (username in the URL, password from the Secret): redis[s]://host/db,
redis[s]+sentinel://sentinels/<master-name>/<db> or redis[s]+cluster://seed-nodes.
*/}}
{{- define "orders.redis.roleUrl" -}}
{{- $user := include "orders.redis.roleUser" . }}
{{- $auth := ternary (printf "%s@" ($user | urlquery)) "" (ne $user "") }}
{{- if and .ctx.Values.tls.redis.enabled .ctx.Values.redis.enabled }}
{{- fail "tls.redis.enabled needs an external Redis (redis.enabled=false, externalRedis.*): the in-release Redis serves no TLS, and rediss:// to it would fail every connection." }}
{{- end }}
{{- $tls := or .ctx.Values.tls.redis.enabled (and (not .ctx.Values.redis.enabled) .ctx.Values.externalRedis.tls) }}
{{- $topology := include "orders.redis.topology" .ctx }}
{{- $hostPart := "" }}
{{- if eq $topology "sentinel" }}
{{- $master := ternary .ctx.Values.redis.replication.masterSet .ctx.Values.externalRedis.sentinel.masterName .ctx.Values.redis.enabled }}
{{- $db := ternary 0 .ctx.Values.externalRedis.database .ctx.Values.redis.enabled }}
{{- $hostPart = printf "%s/%s/%v" (include "orders.redis.hostList" .ctx) (required "the Sentinels' master name is required" $master) $db }}
{{- else if eq $topology "cluster" }}
{{- $hostPart = include "orders.redis.hostList" .ctx }}
{{- else if .ctx.Values.redis.enabled }}
{{- $hostPart = printf "%s:6379/0" (include "orders.redis.host" .ctx) }}
{{- else }}
{{- $host := required "externalRedis.host is required when redis.enabled=false" .ctx.Values.externalRedis.host }}
{{- $hostPart = printf "%s:%v/%v" $host .ctx.Values.externalRedis.port .ctx.Values.externalRedis.database }}
{{- end }}
{{- $scheme := ternary "rediss" "redis" $tls }}
{{- if ne $topology "standalone" }}{{ $scheme = printf "%s+%s" $scheme $topology }}{{ end }}
{{- $url := printf "%s://%s%s" $scheme $auth $hostPart }}
{{- if .ctx.Values.tls.redis.enabled }}
{{- $url = printf "%s?ssl_ca_certs=%s" $url (include "orders.tls.redisCA" .ctx) }}
{{- end }}
{{- $url }}
{{- end }}

{{/*
Environment of the in-release replication nodes' redis and sentinel containers (files/redis-node.sh).
*/}}
{{- define "orders.redis.nodeEnv" -}}
- name: ORDERS_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: ORDERS_SELF
  value: "$(ORDERS_POD_NAME).{{ include "orders.redis.fullname" . }}.{{ .Release.Namespace }}.svc"
- name: ORDERS_NODE_HOSTS
  value: {{ include "orders.redis.nodeHosts" . | trim | replace "\n" " " | quote }}
- name: ORDERS_MASTER_SET
  value: {{ .Values.redis.replication.masterSet | quote }}
- name: ORDERS_QUORUM
  value: {{ .Values.redis.replication.quorum | quote }}
- name: ORDERS_DOWN_AFTER
  value: {{ .Values.redis.replication.downAfterMilliseconds | quote }}
- name: ORDERS_FAILOVER_TIMEOUT
  value: {{ .Values.redis.replication.failoverTimeout | quote }}
- name: ORDERS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "orders.redis.secretName" . }}
      key: redis-sentinel-password
{{- end }}

{{/* What changes the in-release Redis' config beyond 0.2.0's inputs (empty at 0.2.0's defaults, so an upgrade rolls nothing). */}}
{{- define "orders.redis.configInputs" -}}
{{- if ne .Values.redis.maxmemoryPolicy "volatile-lru" }}{{ .Values.redis.maxmemoryPolicy }}{{ end }}
{{- if eq .Values.redis.architecture "replication" }}{{ toJson .Values.redis.replication }}{{ .Files.Get "files/redis-node.sh" }}{{ end }}
{{- end }}

{{/* Key of the Sentinels' password in the Redis Secret (orders.redis.secretName). */}}
{{- define "orders.redis.sentinelPasswordKey" -}}
{{- ternary "redis-sentinel-password" .Values.externalRedis.sentinel.existingSecretPasswordKey .Values.redis.enabled }}
{{- end }}

{{/* Key of the replicas' password: their own (replicaPassword, existingSecretReplicaPasswordKey) or the API's. */}}
{{- define "orders.database.replicaPasswordKey" -}}
{{- if .Values.externalDatabase.existingSecret }}
{{- .Values.externalDatabase.existingSecretReplicaPasswordKey | default .Values.externalDatabase.existingSecretPasswordKey }}
{{- else if .Values.externalDatabase.replicaPassword }}
{{- "mysql-replica-password" }}
{{- else }}
{{- include "orders.database.rolePasswordKey" (dict "ctx" . "role" "api") }}
{{- end }}
{{- end }}

{{/*
ORDERS_DATABASE_REPLICA_URLS: the external MySQL's read replicas (externalDatabase.replicaHosts),
as the API's user, with the primary's TLS options. Empty without replicas.
*/}}
{{- define "orders.database.replicaUrls" -}}
{{- if not .Values.mysql.enabled }}
{{- $user := include "orders.database.roleUser" (dict "ctx" . "role" "api") | urlquery }}
{{- $urls := list }}
{{- range .Values.externalDatabase.replicaHosts }}
{{- $url := printf "mysql://%s@%s:%v/%s" $user (required "every externalDatabase.replicaHosts entry needs a host" .host) (.port | default $.Values.externalDatabase.port) (include "orders.database.name" $) }}
{{- if $.Values.tls.mysql.enabled }}
{{- $url = printf "%s?ssl_ca=%s&ssl_verify_identity=true" $url (include "orders.tls.mysqlCA" $) }}
{{- end }}
{{- $urls = append $urls $url }}
{{- end }}
{{- join "," $urls }}
{{- end }}
{{- end }}

{{/*
Non-secret settings as ORDERS_* variables: the ConfigMap's data, and the seed Job's inline env.
*/}}
{{- define "orders.configData" -}}
ORDERS_PORT: {{ .Values.config.port | quote }}
{{- if .Values.config.adminPort }}
ORDERS_ADMIN_PORT: {{ .Values.config.adminPort | quote }}
{{- end }}
ORDERS_WORKERS: {{ .Values.config.workers | quote }}
ORDERS_THREADS: {{ .Values.config.threads | quote }}
ORDERS_GRACEFUL_TIMEOUT: {{ .Values.config.gracefulTimeout | quote }}
ORDERS_SHUTDOWN_DELAY: {{ .Values.config.shutdownDelay | quote }}
ORDERS_CACHE_TTL: {{ .Values.config.cacheTtl | quote }}
ORDERS_CACHE_PREFIX: {{ .Values.config.cachePrefix | quote }}
ORDERS_PAGE_SIZE: {{ .Values.config.pageSize | quote }}
ORDERS_LOG_LEVEL: {{ .Values.config.logLevel | quote }}
ORDERS_LOG_FORMAT: {{ .Values.config.logFormat | quote }}
ORDERS_DATABASE_WAIT_TIMEOUT: {{ .Values.migrations.waitTimeout | quote }}
ORDERS_INVALIDATOR_METRICS_PORT: {{ .Values.config.invalidatorMetricsPort | quote }}
ORDERS_INVALIDATOR_SERVER_ID: {{ .Values.config.invalidatorServerId | quote }}
ORDERS_INVALIDATOR_STALL_AFTER: {{ .Values.invalidator.stallAfterSeconds | quote }}
ORDERS_INSPECTOR_METRICS_PORT: {{ .Values.config.inspectorMetricsPort | quote }}
ORDERS_INSPECTOR_INTERVAL: {{ .Values.inspector.interval | quote }}
ORDERS_INSPECTOR_PAGES: {{ .Values.inspector.pages | quote }}
{{- range $name, $value := .Values.extraEnv }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
Environment of one orders container: the role's database and Redis URLs and passwords, the
ConfigMap (or, with inline=true, the same settings rendered in place: a hook that may run before
this release's ConfigMap exists must not read an older one), then extraEnvVarsSecret and
extraEnvVars. Call with (dict "ctx" $ "role" "api|invalidator|migrate" "inline" false).
*/}}
{{- define "orders.env" -}}
{{- $ctx := .ctx }}
envFrom:
  {{- if not .inline }}
  - configMapRef:
      name: {{ include "orders.fullname" $ctx }}
  {{- end }}
  {{- with $ctx.Values.extraEnvVarsSecret }}
  - secretRef:
      name: {{ . }}
  {{- end }}
  {{- if and .inline (not $ctx.Values.extraEnvVarsSecret) }} []{{ end }}
env:
  {{- if .inline }}
  {{- range $name, $value := (include "orders.configData" $ctx | fromYaml) }}
  - name: {{ $name }}
    value: {{ $value | toString | quote }}
  {{- end }}
  {{- end }}
  - name: ORDERS_DATABASE_URL
    value: {{ include "orders.database.roleUrl" . | quote }}
  - name: ORDERS_DATABASE_PASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ include "orders.database.secretName" $ctx }}
        key: {{ include "orders.database.rolePasswordKey" . }}
  - name: ORDERS_REDIS_URL
    value: {{ include "orders.redis.roleUrl" . | quote }}
  - name: ORDERS_REDIS_PASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ include "orders.redis.secretName" $ctx }}
        key: {{ include "orders.redis.rolePasswordKey" . }}
  {{- if eq (include "orders.redis.topology" $ctx) "sentinel" }}
  # The Sentinels' own password (a Sentinel without one: the key is absent, and so is the variable).
  - name: ORDERS_REDIS_SENTINEL_PASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ include "orders.redis.secretName" $ctx }}
        key: {{ include "orders.redis.sentinelPasswordKey" $ctx }}
        optional: {{ not $ctx.Values.redis.enabled }}
  {{- end }}
  {{- with $ctx.Values.extraEnvVars }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Volumes every orders pod adds: the TLS CA bundles and extraVolumes. */}}
{{- define "orders.extraVolumes" -}}
{{- if .Values.tls.mysql.enabled }}
- name: mysql-ca
  secret:
    secretName: {{ required "tls.mysql.caSecret is required when tls.mysql.enabled" .Values.tls.mysql.caSecret }}
    items:
      - key: {{ .Values.tls.mysql.caKey }}
        path: ca.crt
{{- end }}
{{- if .Values.tls.redis.enabled }}
- name: redis-ca
  secret:
    secretName: {{ required "tls.redis.caSecret is required when tls.redis.enabled" .Values.tls.redis.caSecret }}
    items:
      - key: {{ .Values.tls.redis.caKey }}
        path: ca.crt
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}
{{- define "orders.extraVolumeMounts" -}}
{{- if .Values.tls.mysql.enabled }}
- name: mysql-ca
  mountPath: {{ dir (include "orders.tls.mysqlCA" .) }}
  readOnly: true
{{- end }}
{{- if .Values.tls.redis.enabled }}
- name: redis-ca
  mountPath: {{ dir (include "orders.tls.redisCA" .) }}
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The schema migration step: `orders-service migrate` waits for MySQL with backoff (up to
migrations.waitTimeout), then applies what is missing under the migration lock, so the API and
invalidator pods of a rollout can all run it at once. Call with (dict "ctx" $ "inline" false).
*/}}
{{- define "orders.migrateContainer" -}}
- name: migrate
  image: {{ include "orders.image" .ctx }}
  imagePullPolicy: {{ .ctx.Values.image.pullPolicy }}
  command: ["orders-service"]
  args: ["migrate"]
  {{- include "orders.env" (dict "ctx" .ctx "role" "migrate" "inline" .inline) | nindent 2 }}
  resources:
    {{- toYaml .ctx.Values.migrations.resources | nindent 4 }}
  securityContext:
    {{- include "orders.containerSecurityContext" (dict "ctx" .ctx "uid" 10001) | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- include "orders.extraVolumeMounts" .ctx | nindent 4 }}
{{- end }}

{{/* The API's environment: the shared one plus ORDERS_AUTH_* when auth.issuer is set. */}}
{{- define "orders.api.env" -}}
{{- /* The API's env: the shared one (dict "ctx" "role" "inline", see orders.env) plus ORDERS_AUTH_*. */}}
{{ include "orders.env" . }}
{{- with include "orders.database.replicaUrls" .ctx }}
  - name: ORDERS_DATABASE_REPLICA_URLS
    value: {{ . | quote }}
  # The replicas' user is the API's; its password the API's unless the replicas have their own.
  - name: ORDERS_DATABASE_REPLICA_PASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ include "orders.database.secretName" $.ctx }}
        key: {{ include "orders.database.replicaPasswordKey" $.ctx }}
{{- end }}
{{- with .ctx.Values.auth }}
{{- if .issuer }}
{{- $jwks := urlParse .jwksUrl }}
{{- if and (eq $jwks.scheme "http") (not .jwksAllowHttp) (not (has $jwks.hostname (list "localhost" "127.0.0.1" "::1"))) }}
{{- fail "auth.jwksUrl is plain http: whoever answers it can mint tokens, and the API refuses it at start. Use https, or set auth.jwksAllowHttp=true for an in-cluster test identity provider." }}
{{- end }}
  - name: ORDERS_AUTH_ISSUER
    value: {{ .issuer | quote }}
  - name: ORDERS_AUTH_AUDIENCE
    value: {{ .audience | quote }}
  - name: ORDERS_AUTH_JWKS_URL
    value: {{ .jwksUrl | quote }}
  {{- if .jwksAllowHttp }}
  - name: ORDERS_AUTH_JWKS_ALLOW_HTTP
    value: "true"
  {{- end }}
  - name: ORDERS_AUTH_REQUIRED_SCOPE
    value: {{ .requiredScope | quote }}
  - name: ORDERS_AUTH_LEEWAY
    value: {{ .leeway | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
What the apps' passwords are made of: the values given and the Secrets named. A changed password or
Secret name rolls the apps; a generated password never changes once made, so it needs no checksum.
*/}}
{{- define "orders.secretInputs" -}}
{{- $inputs := list .Values.mysql.enabled .Values.mysql.auth .Values.externalDatabase.password .Values.externalDatabase.existingSecret .Values.externalDatabase.existingSecretPasswordKey .Values.redis.enabled (include "orders.redis.authInputs" . | fromJson) .Values.externalRedis.password .Values.externalRedis.existingSecret .Values.externalRedis.existingSecretPasswordKey }}
{{- /* Passwords added in 0.3.0 count only when set, so an upgrade that sets none rolls nothing. */}}
{{- $added := list .Values.externalRedis.sentinel.password .Values.externalDatabase.replicaPassword | compact }}
{{- if $added }}{{ $inputs = append $inputs $added }}{{ end }}
{{- toJson $inputs }}
{{- end }}

{{/* redis.auth as a checksum input: sentinelPassword (0.3.0) only when set. */}}
{{- define "orders.redis.authInputs" -}}
{{- $auth := .Values.redis.auth }}
{{- if not $auth.sentinelPassword }}{{ $auth = omit $auth "sentinelPassword" }}{{ end }}
{{- toJson $auth }}
{{- end }}

{{/* Pod annotations that roll pods when their configuration or passwords change. */}}
{{- define "orders.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include "orders.secretInputs" . | sha256sum }}
{{- end }}

{{/*
Egress to the cluster DNS: networkPolicy.dns.to on networkPolicy.dns.ports (UDP and TCP), plus
NodeLocal DNSCache's link-local address when set. openshift=true: OpenShift's DNS pods instead
(namespace openshift-dns, 5353 behind the Service's 53; policies see the translated port).
*/}}
{{- define "orders.networkPolicy.dnsEgress" -}}
{{- $dns := .Values.networkPolicy.dns }}
{{- $to := $dns.to }}
{{- $ports := $dns.ports }}
{{- if .Values.openshift }}
{{- $to = list (dict "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" "openshift-dns")) "podSelector" (dict "matchLabels" (dict "dns.operator.openshift.io/daemonset-dns" "default"))) }}
{{- $ports = concat $ports (list 5353) | uniq }}
{{- end }}
{{- if $dns.nodeLocalAddress }}
{{- $to = append $to (dict "ipBlock" (dict "cidr" (printf "%s/32" $dns.nodeLocalAddress))) }}
{{- end }}
- to:
    {{- toYaml $to | nindent 4 }}
  ports:
    {{- range $port := $ports }}
    - port: {{ $port }}
      protocol: UDP
    - port: {{ $port }}
      protocol: TCP
    {{- end }}
{{- end }}

{{- /* Egress rules shared by the orders components: DNS, MySQL, Redis, the OTLP collector. */}}
{{- define "orders.networkPolicy.appEgress" -}}
{{- $ctx := .ctx }}
{{- include "orders.networkPolicy.dnsEgress" $ctx }}
{{- if $ctx.Values.mysql.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "orders.selectorLabels" (dict "ctx" $ctx "component" "mysql") | nindent 10 }}
  ports:
    - port: 3306
      protocol: TCP
{{- else }}
- {{- with $ctx.Values.networkPolicy.externalTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    {{- $dbPorts := list (int $ctx.Values.externalDatabase.port) }}
    {{- if .replicas }}
    {{- /* the API's read replicas (externalDatabase.replicaHosts) */}}
    {{- range $ctx.Values.externalDatabase.replicaHosts }}
    {{- $dbPorts = append $dbPorts (int (.port | default $ctx.Values.externalDatabase.port)) }}
    {{- end }}
    {{- end }}
    {{- range (uniq $dbPorts) }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- if .redis }}
{{- /* Redis' port, and the Sentinels' where the topology has them (orders.redis.clientPorts). */}}
{{- if $ctx.Values.redis.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "orders.selectorLabels" (dict "ctx" $ctx "component" "redis") | nindent 10 }}
{{- else }}
- {{- with $ctx.Values.networkPolicy.externalTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
  ports:
    {{- range (include "orders.redis.clientPorts" $ctx | trim | splitList "\n") }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- $otlpPort := include "orders.networkPolicy.otlpPort" $ctx | int }}
{{- if and .otlp $otlpPort }}
- {{- with $ctx.Values.networkPolicy.otlp.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - port: {{ $otlpPort }}
      protocol: TCP
{{- end }}
{{- end }}

{{/*
Port of the OTLP collector the pods export to: networkPolicy.otlp.port, else the port of
extraEnv.OTEL_EXPORTER_OTLP_ENDPOINT (4318 for http://, 443 for https:// without one), else 0 (no
OTLP egress).
*/}}
{{- define "orders.networkPolicy.otlpPort" -}}
{{- $endpoint := index (.Values.extraEnv | default dict) "OTEL_EXPORTER_OTLP_ENDPOINT" | default "" | toString }}
{{- if .Values.networkPolicy.otlp.port }}
{{- .Values.networkPolicy.otlp.port }}
{{- else if $endpoint }}
{{- $url := urlParse $endpoint }}
{{- $hostPort := splitList ":" $url.host }}
{{- if gt (len $hostPort) 1 }}
{{- last $hostPort }}
{{- else }}
{{- ternary 443 4318 (eq $url.scheme "https") }}
{{- end }}
{{- else }}0
{{- end }}
{{- end }}

{{/* Port of auth.jwksUrl: the one it names, else 443 for https and 80 for http. */}}
{{- define "orders.networkPolicy.jwksPort" -}}
{{- $url := urlParse .Values.auth.jwksUrl }}
{{- $parts := splitList ":" $url.host }}
{{- if gt (len $parts) 1 }}{{ last $parts }}{{ else if eq $url.scheme "http" }}80{{ else }}443{{ end }}
{{- end }}

{{/*
MySQL's data directory: a subdirectory of its volume (mounted at /var/lib/mysql), because cloud
block volumes carry lost+found at their root; the root itself when
mysql.persistence.dataSubdirectory is empty (a volume an older chart initialised there).
*/}}
{{- define "orders.mysql.datadir" -}}
{{- with .Values.mysql.persistence.dataSubdirectory }}/var/lib/mysql/{{ . }}{{ else }}/var/lib/mysql{{ end }}
{{- end }}
