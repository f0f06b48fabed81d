{{- define "cassandra-sink-operator.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cassandra-sink-operator.labels" -}}
app.kubernetes.io/name: cassandra-sink-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "cassandra-sink-operator.selector" -}}
app.kubernetes.io/name: cassandra-sink-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cassandra-sink-operator.image" -}}
{{- printf "%s:%s" .repository (default $.appVersion .tag) -}}
{{- end -}}

{{/* ClusterRole cluster-wide, Role when one namespace is watched. */}}
{{- define "cassandra-sink-operator.roleKind" -}}
{{- if .Values.watchNamespaces -}}Role{{- else -}}ClusterRole{{- end -}}
{{- end -}}
