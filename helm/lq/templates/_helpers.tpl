{{/* Names, labels and the pieces every workload shares. */}}

{{- define "lq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lq.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "lq.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lq.labels" -}}
helm.sh/chart: {{ include "lq.chart" . }}
app.kubernetes.io/name: {{ include "lq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "gateway"). */}}
{{- define "lq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lq.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "lq.componentLabels" -}}
{{ include "lq.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "lq.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "lq.secretName" -}}
{{- default (printf "%s-auth" (include "lq.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "lq.redisExternal" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret -}}true{{- end -}}
{{- end -}}

{{- define "lq.redisBundled" -}}
{{- if and .Values.redis.bundled.enabled (not (include "lq.redisExternal" .)) -}}true{{- end -}}
{{- end -}}

{{/* LQ_REDIS_URL and LQ_PREFIX, for every lq container. */}}
{{- define "lq.redisEnv" -}}
{{- if .Values.redis.existingSecret }}
- name: LQ_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.existingSecretKey }}
{{- else if .Values.redis.url }}
- name: LQ_REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- else if .Values.redis.bundled.enabled }}
- name: LQ_REDIS_URL
  value: {{ printf "redis://%s-redis:6379/0" (include "lq.fullname" .) | quote }}
{{- else }}
{{- fail "redis: set redis.url or redis.existingSecret, or enable redis.bundled" }}
{{- end }}
- name: LQ_PREFIX
  value: {{ .Values.prefix | quote }}
{{- end -}}

{{/* Extra LQ_ settings of a component: include with its env map. */}}
{{- define "lq.extraEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* Affinity: the user's, else anti-affinity over nodes (soft or hard) or none. */}}
{{- define "lq.affinity" -}}
{{- $c := .component -}}
{{- $values := index .ctx.Values $c -}}
{{- if $values.affinity }}
affinity:
  {{- toYaml $values.affinity | nindent 2 }}
{{- else if eq $values.antiAffinity "soft" }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "lq.selectorLabels" . | nindent 14 }}
{{- else if eq $values.antiAffinity "hard" }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "lq.selectorLabels" . | nindent 12 }}
{{- end }}
{{- end -}}

{{/* Scheduling and pull secrets shared by the lq pods. */}}
{{- define "lq.podScheduling" -}}
{{- $values := index .ctx.Values .component -}}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- include "lq.affinity" . }}
{{- end -}}

{{- define "lq.preStop" -}}
{{- if gt (int .) 0 }}
lifecycle:
  preStop:
    exec:
      command: ["sleep", "{{ . }}"]
{{- end }}
{{- end -}}
