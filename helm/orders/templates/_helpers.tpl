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

{{- define "orders.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "orders.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
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
ORDERS_DATABASE_URL without a password: the password reaches the pods only as
ORDERS_DATABASE_PASSWORD from a Secret.
*/}}
{{- define "orders.database.url" -}}
{{- printf "mysql://%s@%s:%v/%s" (include "orders.database.user" . | urlquery) (include "orders.database.host" .) (include "orders.database.port" .) (include "orders.database.name" .) }}
{{- end }}

{{- define "orders.redis.url" -}}
{{- if .Values.redis.enabled }}
{{- printf "redis://%s:6379/0" (include "orders.redis.host" .) }}
{{- else }}
{{- $host := required "externalRedis.host is required when redis.enabled=false" .Values.externalRedis.host }}
{{- printf "%s://%s:%v/%v" (ternary "rediss" "redis" .Values.externalRedis.tls) $host .Values.externalRedis.port .Values.externalRedis.database }}
{{- end }}
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
{{- if and .Values.mysql.enabled .Values.mysql.auth.existingSecret }}
{{- .Values.mysql.auth.existingSecretPasswordKey }}
{{- else if and (not .Values.mysql.enabled) .Values.externalDatabase.existingSecret }}
{{- .Values.externalDatabase.existingSecretPasswordKey }}
{{- else }}
{{- "mysql-password" }}
{{- end }}
{{- end }}
{{- define "orders.database.secretRootPasswordKey" -}}
{{- ternary .Values.mysql.auth.existingSecretRootPasswordKey "mysql-root-password" (ne .Values.mysql.auth.existingSecret "") }}
{{- end }}
{{- define "orders.redis.secretName" -}}
{{- $existing := ternary .Values.redis.auth.existingSecret .Values.externalRedis.existingSecret .Values.redis.enabled }}
{{- default (include "orders.fullname" .) $existing }}
{{- end }}
{{- define "orders.redis.secretPasswordKey" -}}
{{- if and .Values.redis.enabled .Values.redis.auth.existingSecret }}
{{- .Values.redis.auth.existingSecretPasswordKey }}
{{- else if and (not .Values.redis.enabled) .Values.externalRedis.existingSecret }}
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
A password that must survive `helm upgrade`: the value given, else the one already in the release's
Secret (lookup; empty under `helm template`), else a new random one. Call with
(dict "ctx" $ "key" "mysql-password" "value" .Values.mysql.auth.password). Returns base64.
*/}}
{{- define "orders.secret.stablePassword" -}}
{{- if .value }}
{{- .value | toString | b64enc }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace (include "orders.fullname" .ctx) }}
{{- if and $existing (hasKey ($existing.data | default dict) .key) }}
{{- index $existing.data .key }}
{{- else }}
{{- randAlphaNum 32 | b64enc }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod-level security context shared by every pod of the chart (Pod Security Standard "restricted"). */}}
{{- define "orders.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context shared by every container of the chart. */}}
{{- define "orders.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
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

{{/* Environment shared by the API, the invalidator and the Job: the ConfigMap plus the passwords. */}}
{{- define "orders.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "orders.fullname" . }}
env:
  - name: ORDERS_DATABASE_PASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ include "orders.database.secretName" . }}
        key: {{ include "orders.database.secretPasswordKey" . }}
  - name: ORDERS_REDIS_PASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ include "orders.redis.secretName" . }}
        key: {{ include "orders.redis.secretPasswordKey" . }}
{{- end }}

{{/*
What the passwords are made of: the values given and the Secrets named. Hashing these rather than the
rendered Secret keeps the checksum still for generated passwords (random on install, read back on
upgrade) while a changed password or Secret name still rolls the pods.
*/}}
{{- define "orders.secretInputs" -}}
{{- toJson (list .Values.mysql.enabled .Values.mysql.auth .Values.externalDatabase.password .Values.externalDatabase.existingSecret .Values.externalDatabase.existingSecretPasswordKey .Values.redis.enabled .Values.redis.auth .Values.externalRedis.password .Values.externalRedis.existingSecret .Values.externalRedis.existingSecretPasswordKey) }}
{{- end }}

{{/* Pod annotations that roll pods when their configuration or passwords change. */}}
{{- define "orders.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include "orders.secretInputs" . | sha256sum }}
{{- end }}
