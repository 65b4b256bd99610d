# cosdoc-certs-script: apply
<#
.SYNOPSIS
    Executes the ordered actions of a certificate rotation on a CosDoc application server and
    returns one compact JSON document with a result per action.

.DESCRIPTION
    -Actions is a JSON array of action objects (the contract is written down in
    cosdoc_certs/windows/apply_contract.py). File contents travel in -FileContents (base64,
    indexed by content_index), not in -Actions: Windows PowerShell 5.1's ConvertFrom-Json
    refuses text longer than 2,097,152 characters.
      import-pfx      {index, thumbprints, key_provider, authorities}
                                               Import-PfxCertificate of -PfxFiles[index] into
                                               Cert:\LocalMachine\My (temporary file deleted in
                                               a finally block); skipped for a certificate there
                                               with its key already (a new import would replace
                                               its key file and drop its grants); the key must
                                               land in key_provider (the PFX's CSP-name
                                               attribute, honoured without the ALWAYS_CNG flag),
                                               else the new certificate is removed and the
                                               action fails; authorities (base64 DER) missing
                                               from LocalMachine\CA and \Root go into \CA
      write-file      {path, content_index, expected_sha256}
                                               compare-and-swap: the file must still have the
                                               planned SHA-256; the original is copied to
                                               "<path>.cosdoc-certs-<RunId>.bak" beside it first
      grant-read      {thumbprint, account, sid}
                                               icacls <key file> /grant "*<sid>:(R)" (by SID:
                                               names are localized); the key file is found by
                                               its unique name in every machine key folder
      set-binding     {site, binding, thumbprint, settings|null}
                                               netsh http update sslcert (hostnameport= for SNI,
                                               ipport= otherwise: 0.0.0.0 for '*', IPv6 in
                                               brackets) carrying every setting of the entry
                                               (read from its registry key; or the given
                                               settings) and checking afterwards that none
                                               changed; AddSslCertificate when the binding has
                                               no certificate yet
      restart-service {name}                   ServiceController Stop/Start, each phase bounded by
                                               WaitForStatus(..., 60 s); a stop that times out
                                               names the process still running; Running after
      recycle-pool    {name}                   Restart-WebAppPool (Start-WebAppPool if stopped);
                                               Started afterwards
      restore-file    {path, backup, expected_sha256|null}
      remove-authority {thumbprint}            removes a CA certificate from LocalMachine\CA
    Every action name and content_index is checked, and every write-file hash compared,
    before the first action runs, so a file edited by hand since planning stops the run
    before anything is touched. Every way out of the script writes the result document: a
    failure outside an action (unreadable -Actions, an unknown action, a missing parameter)
    sets its "error" and runs nothing more. Then the actions run in order and
    the run stops at the first failure. Each result carries the facts from before the action
    that an undo needs. Non-terminating errors are turned into failed actions
    ($ErrorActionPreference = 'Stop' inside a try/catch per action).

    The PFX password arrives as a SecureString (-PfxPassword) and is never written anywhere.

    -PostStateScript is the text of gather.ps1, sent along by the client: after a run in which
    every action succeeded, it is run (with -ServicePatterns and -ConfigFiles) over the state
    the actions reached, and the JSON document it wrote travels back as "post_state" (text),
    so the client verifies a run, or checks that an undo restored the original files and
    bindings, without a pipeline of its own. A text that is not gather.ps1, or
    a read that fails, sets "post_state_error" instead; the actions' results stand either way.

    -Check runs every action's preconditions instead of the action, changing nothing, and
    does not stop at the first blocker: each result says what the action would do (ok) or why
    it cannot, with the fix. The PFX is opened in memory with the password (X509Certificate2
    with a SecureString), LocalMachine\My opened ReadWrite and closed, each key file opened
    for WRITE_DAC and closed, each config file hashed and its DACL (and its folder's, for the
    backup) read for our token's SIDs, each service's state and start mode read, each
    http.sys entry read and its settings converted to netsh options, each pool's state read.
    The document then also carries "check": true and "environment": elevated administrator,
    Full Language mode and (when a binding or pool is in the plan) WebAdministration.

    Windows Server 2016-2022 (Windows PowerShell 5.1, .NET Framework >= 4.6). Server 2012 R2:
    Get-FileHash and Import-PfxCertificate exist (PowerShell 4); without .NET 4.6 the key file is
    found from $cert.PrivateKey (CAPI keys only), and PFX files must be 3DES/SHA-1 (they are).

.EXAMPLE
    $password = Read-Host -AsSecureString
    & .\apply.ps1 -Actions '[{"action":"restart-service","name":"Digihelse.Adressering"}]' -RunId test -PfxPassword $password
#>
[CmdletBinding()]
param(
    [string] $Actions,
    [string] $RunId,
    [string[]] $PfxFiles = @(),
    [string[]] $FileContents = @(),
    [System.Security.SecureString] $PfxPassword,
    [switch] $Check,
    [string] $PostStateScript,
    [string[]] $ServicePatterns = @(),
    [string[]] $ConfigFiles = @()
)

# Checked first: in Constrained Language Mode (AppLocker/WDAC) every .NET call below fails.
# Only a plain hashtable and ConvertTo-Json here (both work in that mode): nothing ran.
if ($ExecutionContext.SessionState.LanguageMode -ne 'FullLanguage') {
    $refusal = 'apply.ps1 cannot run: PowerShell on this server is in Constrained Language Mode (AppLocker or WDAC), which blocks the .NET calls it needs; it needs FullLanguage (now: {0}). Run it from a session the policy exempts, or ask the server''s administrators to allow the script.' -f $ExecutionContext.SessionState.LanguageMode
    ConvertTo-Json -InputObject @{ schema_version = 1; results = @(); completed = 0; failed_index = $null; error = $refusal } -Compress
    return
}

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

$SchemaVersion = 1
$ServiceTimeoutSeconds = 60
$ServiceSettleSeconds = 2
$PoolTimeoutSeconds = 30
$CimTimeoutSeconds = 30
$NativeTimeoutSeconds = 60
$IisAppId = '{4dc3e181-e14b-4a21-b022-59fc669b0914}'
$StorePath = 'Cert:\LocalMachine\My'
$CaStorePath = 'Cert:\LocalMachine\CA'
$RootStorePath = 'Cert:\LocalMachine\Root'
$RsaExtensions = 'System.Security.Cryptography.X509Certificates.RSACertificateExtensions' -as [type]
$EcdsaExtensions = 'System.Security.Cryptography.X509Certificates.ECDsaCertificateExtensions' -as [type]
$KeyFolders = @('Crypto\Keys', 'Crypto\RSA\MachineKeys', 'Crypto\SystemKeys')
$HttpSysRegistry = 'HKLM:\SYSTEM\CurrentControlSet\Services\HTTP\Parameters\'
# An http.sys entry's registry values and what netsh writes when an option is not given.
$HttpSysDefaults = [ordered]@{
    AppId                                   = $IisAppId
    DefaultSslCertCheckMode                 = 0
    DefaultSslRevocationFreshnessTime       = 0
    DefaultSslRevocationUrlRetrievalTimeout = 0
    DefaultSslCtlIdentifier                 = ''
    DefaultSslCtlStoreName                  = ''
    DefaultFlags                            = 0
}
# netsh option =enable -> DefaultFlags bit (HTTP_SERVICE_CONFIG_SSL_FLAG_*).
$NetshFlagOptions = [ordered]@{
    dsmapperusage = 0x1; clientcertnegotiation = 0x2; disablehttp2 = 0x10; disablequic = 0x20
    disabletls13 = 0x40; disableocspstapling = 0x80; disablelegacytls = 0x400; disabletls12 = 0x1000
}
# netsh option -> DefaultSslCertCheckMode bit and the value that sets it.
$NetshCheckModeOptions = [ordered]@{
    verifyclientcertrevocation = @(0x1, 'disable'); verifyrevocationwithcachedclientcertonly = @(0x2, 'enable'); usagecheck = @(0x10000, 'disable')
}
$NetshValueOptions = [ordered]@{
    revocationfreshnesstime = 'DefaultSslRevocationFreshnessTime'; urlretrievaltimeout = 'DefaultSslRevocationUrlRetrievalTimeout'
    sslctlidentifier = 'DefaultSslCtlIdentifier'; sslctlstorename = 'DefaultSslCtlStoreName'
}

function Get-Sha256 {
    # Upper-case hex SHA-256 of a file, or $null when there is no such file.
    param([string] $Path)
    if (-not (Test-Path -LiteralPath $Path -PathType Leaf)) { return $null }
    return (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToUpperInvariant()
}

function Get-OptionalProperty {
    # A property that may not exist on this IIS/Windows version, without tripping StrictMode.
    param($InputObject, [string] $Name)
    if ($null -eq $InputObject) { return $null }
    $property = $InputObject.PSObject.Properties[$Name]
    if ($null -eq $property) { return $null }
    return $property.Value
}

function ConvertTo-NativeArgument {
    # One argument as CommandLineToArgvW reads it back: quoted when it holds a space or a quote.
    param([string] $Text)
    if ($Text -ne '' -and $Text -notmatch '[\s"]') { return $Text }
    return '"' + (($Text -replace '(\\*)"', '$1$1\"') -replace '(\\+)$', '$1$1') + '"'
}

function Invoke-Native {
    # A native command (netsh, icacls) bounded by $NativeTimeoutSeconds: its exit code and its
    # output (stdout and stderr). A command that does not finish in time is ended and fails.
    param([string] $FilePath, [string[]] $ArgumentList)
    $info = New-Object System.Diagnostics.ProcessStartInfo
    $info.FileName = $FilePath
    $info.Arguments = (@($ArgumentList | ForEach-Object { ConvertTo-NativeArgument -Text $_ }) -join ' ')
    $info.UseShellExecute = $false
    $info.RedirectStandardOutput = $true
    $info.RedirectStandardError = $true
    $info.CreateNoWindow = $true
    $process = [System.Diagnostics.Process]::Start($info)
    $stdout = $process.StandardOutput.ReadToEndAsync()
    $stderr = $process.StandardError.ReadToEndAsync()
    if (-not $process.WaitForExit($NativeTimeoutSeconds * 1000)) {
        $process.Kill()
        throw ('{0} did not finish within {1} s and was ended.' -f $FilePath, $NativeTimeoutSeconds)
    }
    $process.WaitForExit()
    $text = (($stdout.Result + ' ' + $stderr.Result) -replace '\s+', ' ').Trim()
    return [pscustomobject]@{ ExitCode = $process.ExitCode; Output = $text }
}

function Get-PrivateKeyObject {
    # .NET >= 4.6: RSACng for CNG keys, RSACryptoServiceProvider for CAPI keys; else CAPI only.
    param([System.Security.Cryptography.X509Certificates.X509Certificate2] $Certificate)
    if ($null -eq $RsaExtensions) { return $Certificate.PrivateKey }
    $key = $RsaExtensions::GetRSAPrivateKey($Certificate)
    if ($null -eq $key -and $null -ne $EcdsaExtensions) { $key = $EcdsaExtensions::GetECDsaPrivateKey($Certificate) }
    return $key
}

function Get-KeyFilePath {
    # The key file as gather.ps1 finds it: by the key's unique name, in every machine key
    # folder, whatever .NET opened the key as (it opens software CAPI keys through CNG too).
    param([System.Security.Cryptography.X509Certificates.X509Certificate2] $Certificate)
    if (-not $Certificate.HasPrivateKey) { throw ('The certificate {0} has no private key.' -f $Certificate.Thumbprint) }
    $key = Get-PrivateKeyObject -Certificate $Certificate
    try {
        $cngKey = Get-OptionalProperty -InputObject $key -Name 'Key'
        if ($cngKey -is [System.Security.Cryptography.CngKey]) {
            $provider, $uniqueName = [string] $cngKey.Provider.Provider, [string] $cngKey.UniqueName
        } elseif ($key -is [System.Security.Cryptography.ICspAsymmetricAlgorithm]) {
            $provider, $uniqueName = [string] $key.CspKeyContainerInfo.ProviderName, [string] $key.CspKeyContainerInfo.UniqueKeyContainerName
        } else {
            throw ('The key of {0} is neither a CNG nor a CAPI key.' -f $Certificate.Thumbprint)
        }
    } finally {
        if ($key -is [System.IDisposable]) { $key.Dispose() }
    }
    foreach ($folder in $KeyFolders) {
        $path = [System.IO.Path]::Combine($env:ProgramData, 'Microsoft', $folder, $uniqueName)
        if ([System.IO.File]::Exists($path)) { return $path }
    }
    throw ('The key of {0} ({1}) has no file in any machine key folder: it cannot be granted by a file ACL.' -f $Certificate.Thumbprint, $provider)
}

function Test-AccountCanRead {
    # True when an Allow rule for the SID itself includes reading the file (rules read as SIDs).
    param([string] $Path, [string] $Sid)
    $acl = Get-Acl -LiteralPath $Path -ErrorAction Stop
    foreach ($rule in @($acl.GetAccessRules($true, $true, [System.Security.Principal.SecurityIdentifier]))) {
        if ([string] $rule.AccessControlType -ne 'Allow') { continue }
        $rights = [int] $rule.FileSystemRights
        $canRead = (($rights -band 1) -ne 0) -or (($rights -band 0x10000000) -ne 0) -or ($rights -lt 0)
        if ($canRead -and [string] $rule.IdentityReference.Value -eq $Sid) { return $true }
    }
    return $false
}

function Get-RecentErrorText {
    # The first line of up to three Application-log errors since $Since ("Keyset does not exist").
    param([datetime] $Since)
    try {
        $events = @(Get-WinEvent -FilterHashtable @{ LogName = 'Application'; Level = 2; StartTime = $Since } -MaxEvents 3 -ErrorAction Stop)
    } catch {
        return ''
    }
    $lines = @($events | ForEach-Object { ([string] $_.Message -split "`r?`n")[0] })
    return ($lines -join ' ')
}

function Import-IisModule {
    if ($null -eq (Get-Module -Name WebAdministration)) { Import-Module -Name WebAdministration -Verbose:$false }
}

function Get-SslFlags {
    # sslFlags is an integer on IIS 8+, sometimes rendered as flag names; absent on IIS 7.5.
    param($Binding)
    $value = Get-OptionalProperty -InputObject $Binding -Name 'sslFlags'
    if ($null -eq $value -or "$value" -eq '') { return 0 }
    $text = "$value"
    if ($text -match '^\d+$') { return [int] $text }
    if ($text -match 'Sni') { return 1 }
    return 0
}

function Get-CapiProviderName {
    # The CSP of a CAPI key (.PrivateKey answers for CAPI keys only; it throws for CNG keys).
    param([System.Security.Cryptography.X509Certificates.X509Certificate2] $Certificate)
    try {
        $capiKey = $Certificate.PrivateKey
        if ($capiKey -is [System.Security.Cryptography.ICspAsymmetricAlgorithm]) { return [string] $capiKey.CspKeyContainerInfo.ProviderName }
    } catch {
        Write-Verbose ('{0}: not a CAPI key ({1})' -f $Certificate.Thumbprint, $_.Exception.Message)
    }
    return $null
}

function Get-KeyProviderName {
    # The provider of a certificate's key as certutil shows it: the CSP of a CAPI key, else the
    # KSP the CngKey names (.NET 4.7+ may open a CAPI key through CNG: CAPI is asked first).
    param([System.Security.Cryptography.X509Certificates.X509Certificate2] $Certificate)
    $capiProvider = Get-CapiProviderName -Certificate $Certificate
    if ($null -ne $capiProvider) { return $capiProvider }
    $key = Get-PrivateKeyObject -Certificate $Certificate
    try {
        $cngKey = Get-OptionalProperty -InputObject $key -Name 'Key'
        if ($cngKey -is [System.Security.Cryptography.CngKey]) { return [string] $cngKey.Provider.Provider }
    } finally {
        if ($key -is [System.IDisposable]) { $key.Dispose() }
    }
    return $null
}

function Import-PfxFile {
    # Import-PfxCertificate of -PfxFiles[index] through a temporary file deleted in any case.
    param($Action)
    $index = [int] $Action.index
    $temp = Join-Path -Path ([System.IO.Path]::GetTempPath()) -ChildPath ('cosdoc-certs-{0}-{1}.pfx' -f $RunId, $index)
    try {
        [System.IO.File]::WriteAllBytes($temp, [Convert]::FromBase64String($PfxFiles[$index]))
        $imported = @(Import-PfxCertificate -FilePath $temp -CertStoreLocation $StorePath -Password $PfxPassword -ErrorAction Stop)
    } finally {
        if (Test-Path -LiteralPath $temp) { Remove-Item -LiteralPath $temp -Force }
    }
    $thumbprints = @($imported | ForEach-Object { ([string] $_.Thumbprint).ToUpperInvariant() })
    $missing = @($Action.thumbprints | Where-Object { $thumbprints -notcontains ([string] $_).ToUpperInvariant() })
    if ($missing.Count -gt 0) { throw ('The PFX file does not hold {0}.' -f ($missing -join ', ')) }
}

function Assert-KeyProvider {
    # The planned provider, or the new certificates go out again (with their keys) and we fail.
    param($Action, $Before, [string[]] $Imported)
    foreach ($thumbprint in $Imported) {
        $actual = Get-KeyProviderName -Certificate (Get-Item -LiteralPath (Join-Path -Path $StorePath -ChildPath $thumbprint))
        $Before.key_provider = $actual
        $expected = Get-OptionalProperty -InputObject $Action -Name 'key_provider'
        if ($null -eq $expected -or [string]::Equals([string] $actual, [string] $expected, [StringComparison]::OrdinalIgnoreCase)) { continue }
        foreach ($takenBack in $Imported) {
            if ($Before.present -contains $takenBack) { continue }
            Remove-Item -LiteralPath (Join-Path -Path $StorePath -ChildPath $takenBack) -DeleteKey -ErrorAction Stop
        }
        throw ('The key of {0} was imported into {1}, not {2} as planned; the certificate was removed again.' -f $thumbprint, $actual, $expected)
    }
}

function Add-Authorities {
    # Intermediate CAs the CA and Root stores lack go into LocalMachine\CA (listed for the undo).
    param($Action, $Before)
    $added = New-Object System.Collections.Generic.List[string]
    $caStore = New-Object System.Security.Cryptography.X509Certificates.X509Store('CA', 'LocalMachine')
    $caStore.Open('ReadWrite')
    try {
        foreach ($encoded in @(Get-OptionalProperty -InputObject $Action -Name 'authorities')) {
            if ($null -eq $encoded) { continue }
            $ca = New-Object System.Security.Cryptography.X509Certificates.X509Certificate2 -ArgumentList (, [Convert]::FromBase64String([string] $encoded)) -ErrorAction Stop
            $thumbprint = ([string] $ca.Thumbprint).ToUpperInvariant()
            $known = (Test-Path -LiteralPath (Join-Path -Path $CaStorePath -ChildPath $thumbprint -ErrorAction Stop) -ErrorAction Stop) -or (Test-Path -LiteralPath (Join-Path -Path $RootStorePath -ChildPath $thumbprint -ErrorAction Stop) -ErrorAction Stop)
            if ($known) { continue }
            $caStore.Add($ca)
            $added.Add($thumbprint)
            $Before.authorities_added = $added.ToArray()
        }
    } finally {
        $caStore.Close()
    }
}

function Get-WantedImport {
    # What is in the store (with its key) already, into $Before, and the thumbprints still to
    # import. Re-checked here, not only when planning: a certificate with its key by now keeps it.
    param($Action, $Before)
    $Before.present = @($Action.thumbprints | ForEach-Object { ([string] $_).ToUpperInvariant() } | Where-Object { Test-Path -LiteralPath (Join-Path -Path $StorePath -ChildPath $_) })
    $Before.with_key = @($Before.present | Where-Object { (Get-Item -LiteralPath (Join-Path -Path $StorePath -ChildPath $_)).HasPrivateKey })
    $index = [int] $Action.index
    if ($index -lt 0 -or $index -ge $PfxFiles.Count) { throw ('-PfxFiles has no file number {0}.' -f $index) }
    return , @($Action.thumbprints | ForEach-Object { ([string] $_).ToUpperInvariant() } | Where-Object { $Before.with_key -notcontains $_ })
}

function Invoke-ImportPfx {
    param($Action, $Before)
    $wanted = Get-WantedImport -Action $Action -Before $Before
    if ($wanted.Count -gt 0) {
        if ($null -eq $PfxPassword) { throw '-PfxPassword is needed to import a PFX file.' }
        Import-PfxFile -Action $Action
        Assert-KeyProvider -Action $Action -Before $Before -Imported $wanted
    }
    Add-Authorities -Action $Action -Before $Before
    if ($wanted.Count -eq 0) {
        $Before.key_provider = Get-KeyProviderName -Certificate (Get-Item -LiteralPath (Join-Path -Path $StorePath -ChildPath $Before.with_key[0]))
        return ('{0} already in the store with its key: not imported again (its key file and grants are kept)' -f ($Action.thumbprints -join ', '))
    }
    return ('imported {0} (key in {1})' -f ($wanted -join ', '), $Before.key_provider)
}

function Write-FileInPlace {
    # WriteAllBytes (CREATE_ALWAYS) is denied on a ReadOnly or Hidden file: clear those two
    # attributes for the write and put the original attributes back afterwards, whatever happens.
    param([string] $Path, [byte[]] $Bytes)
    $item = Get-Item -LiteralPath $Path -Force -ErrorAction Stop
    $attributes = $item.Attributes
    $blocking = [System.IO.FileAttributes]::ReadOnly -bor [System.IO.FileAttributes]::Hidden
    $cleared = ($attributes -band $blocking) -ne 0
    if ($cleared) {
        try {
            $item.Attributes = $attributes -band (-bnot $blocking)
        } catch {
            throw ("Cannot clear the ReadOnly/Hidden attributes of '{0}' ({1}) to write it: {2}" -f $Path, $attributes, $_.Exception.Message)
        }
    }
    try {
        [System.IO.File]::WriteAllBytes($Path, $Bytes)
    } catch {
        $reason = $_.Exception
        if ($null -ne $reason.InnerException) { $reason = $reason.InnerException }
        throw ("Cannot write '{0}' (attributes {1}): {2}" -f $Path, $attributes, $reason.Message)
    } finally {
        if ($cleared) { (Get-Item -LiteralPath $Path -Force -ErrorAction Stop).Attributes = $attributes }
    }
}

function Invoke-WriteFile {
    param($Action, $Before)
    $path = [string] $Action.path
    $Before.sha256 = Get-Sha256 -Path $path
    if ($null -eq $Before.sha256) { throw ("Cannot find path '{0}' because it does not exist." -f $path) }
    if ($Before.sha256 -ne ([string] $Action.expected_sha256).ToUpperInvariant()) {
        throw ("'{0}' changed since planning; not overwritten." -f $path)
    }
    $content = [Convert]::FromBase64String($FileContents[[int] $Action.content_index])
    $backup = '{0}.cosdoc-certs-{1}.bak' -f $path, $RunId
    Copy-Item -LiteralPath $path -Destination $backup -Force
    $Before.backup = $backup
    # The backup may hold connection-string passwords: give it the original's access rules
    # (the DACL only: writing another owner would need SeRestorePrivilege).
    $acl = Get-Acl -LiteralPath $backup
    $acl.SetSecurityDescriptorSddlForm((Get-Acl -LiteralPath $path).GetSecurityDescriptorSddlForm('Access'), 'Access')
    Set-Acl -LiteralPath $backup -AclObject $acl
    Write-FileInPlace -Path $path -Bytes $content
    return ('wrote {0} bytes (backup {1})' -f $content.Length, $backup)
}

function Invoke-GrantRead {
    param($Action, $Before)
    $certificate = Get-Item -LiteralPath (Join-Path -Path $StorePath -ChildPath ([string] $Action.thumbprint))
    $keyFile = Get-KeyFilePath -Certificate $certificate
    $account, $sid = [string] $Action.account, [string] $Action.sid
    if ($sid -notmatch '^S-1-[0-9-]+$') { throw ("'{0}' is not a SID." -f $sid) }
    $Before.key_file = $keyFile
    $Before.could_read = Test-AccountCanRead -Path $keyFile -Sid $sid
    # By SID: names are localized (NT-MYNDIGHET\...) and '.\user' does not resolve (1332).
    $result = Invoke-Native -FilePath 'icacls.exe' -ArgumentList @($keyFile, '/grant', "*${sid}:(R)")
    if ($result.ExitCode -ne 0) { throw ('icacls failed (exit code {0}): {1}' -f $result.ExitCode, $result.Output) }
    return ('{0} may read {1}' -f $account, $keyFile)
}

function Get-HttpSysEntry {
    # The http.sys entry of an IIS binding, as netsh names it and as its registry key is named:
    # hostnameport=host:port for SNI; ipport= otherwise, '*' written 0.0.0.0, IPv6 in brackets.
    param([string] $Binding, [bool] $Sni)
    $match = [regex]::Match($Binding, '^(.*):(\d+):(.*)$')
    if (-not $match.Success) { throw ("'{0}' is not ip:port:host." -f $Binding) }
    $ip, $port, $hostName = $match.Groups[1].Value, $match.Groups[2].Value, $match.Groups[3].Value
    if ($Sni) {
        return [pscustomobject]@{ Argument = "hostnameport=${hostName}:$port"; Key = "SslSniBindingInfo\${hostName}:$port" }
    }
    $bare = $ip.Trim('[', ']')
    if ($bare -eq '*' -or $bare -eq '') { $bare = '0.0.0.0' }
    $endpoint = "${bare}:$port"
    if ($bare.Contains(':')) { $endpoint = "[$bare]:$port" }
    return [pscustomobject]@{ Argument = "ipport=$endpoint"; Key = "SslBindingInfo\$endpoint" }
}

function Read-SslCertEntry {
    # The entry's registry values (language-independent, unlike netsh's output), or $null.
    param([string] $Key)
    $path = $HttpSysRegistry + $Key
    if (-not (Test-Path -LiteralPath $path)) { return $null }
    $values = Get-ItemProperty -LiteralPath $path -ErrorAction Stop
    $hash = [byte[]] (Get-OptionalProperty -InputObject $values -Name 'SslCertHash')
    $settings = [ordered]@{}
    foreach ($name in $HttpSysDefaults.Keys) {
        $value = Get-OptionalProperty -InputObject $values -Name $name
        if ($null -eq $value) { $value = $HttpSysDefaults[$name] }
        if ($value -is [byte[]]) { $value = (New-Object -TypeName System.Guid -ArgumentList (, $value)).ToString('B') }
        $settings[$name] = $value
    }
    return [pscustomobject]@{ Thumbprint = ([BitConverter]::ToString($hash) -replace '-', ''); Settings = $settings }
}

function ConvertTo-SettingStrings {
    param($Settings)
    return , @($Settings.Keys | ForEach-Object { '{0}={1}' -f $_, $Settings[$_] })
}

function ConvertFrom-SettingStrings {
    param([string[]] $Strings)
    $settings = [ordered]@{}
    foreach ($name in $HttpSysDefaults.Keys) { $settings[$name] = $HttpSysDefaults[$name] }
    foreach ($text in $Strings) {
        $name, $value = $text -split '=', 2
        if ($HttpSysDefaults[$name] -is [int]) { $value = [int64] $value }
        $settings[$name] = $value
    }
    return $settings
}

function ConvertTo-NetshOption {
    # Every non-default setting as a netsh option: netsh update resets what it is not given.
    param($Settings, [string] $Argument)
    $flags, $checkMode = [int64] $Settings.DefaultFlags, [int64] $Settings.DefaultSslCertCheckMode
    $options = New-Object System.Collections.Generic.List[string]
    $knownFlags, $knownModes = 0, 0
    foreach ($name in $NetshFlagOptions.Keys) {
        $knownFlags = $knownFlags -bor $NetshFlagOptions[$name]
        if (($flags -band $NetshFlagOptions[$name]) -ne 0) { $options.Add("$name=enable") }
    }
    foreach ($name in $NetshCheckModeOptions.Keys) {
        $bit, $value = $NetshCheckModeOptions[$name]
        $knownModes = $knownModes -bor $bit
        if (($checkMode -band $bit) -ne 0) { $options.Add("$name=$value") }
    }
    if ([int64] $Settings.DefaultSslRevocationFreshnessTime -ne 0) { $knownModes = $knownModes -bor 4 }
    if ((($flags -band (-bnot $knownFlags)) -ne 0) -or (($checkMode -band (-bnot $knownModes)) -ne 0)) {
        throw ('The http.sys entry {0} has settings netsh cannot carry over (DefaultFlags 0x{1:X}, DefaultSslCertCheckMode 0x{2:X}); update its certificate by hand.' -f $Argument, $flags, $checkMode)
    }
    foreach ($name in $NetshValueOptions.Keys) {
        $value = $Settings[$NetshValueOptions[$name]]
        if ("$value" -ne '' -and "$value" -ne '0') { $options.Add("$name=$value") }
    }
    return , $options.ToArray()
}

function Get-RebindTarget {
    # The IIS binding of a set-binding action and its http.sys entry; refused for a Central
    # Certificate Store binding, or a certificate not in the store unless -Imported earlier.
    param($Action, [bool] $Imported = $false)
    Import-IisModule
    $site, $thumbprint = [string] $Action.site, ([string] $Action.thumbprint).ToUpperInvariant()
    $binding = @(Get-WebBinding -Name $site -Protocol 'https' -ErrorAction Stop | Where-Object { $_.bindingInformation -eq $Action.binding })
    if ($binding.Count -eq 0) { throw ("The site '{0}' has no binding '{1}'." -f $site, $Action.binding) }
    $sslFlags = Get-SslFlags -Binding $binding[0]
    if (($sslFlags -band 2) -ne 0) { throw ("'{0}' of '{1}' takes its certificate from the Central Certificate Store; not rebound." -f $Action.binding, $site) }
    if (-not $Imported -and -not (Test-Path -LiteralPath (Join-Path -Path $StorePath -ChildPath $thumbprint))) {
        throw ("Cannot find path '{0}\{1}' because it does not exist." -f $StorePath, $thumbprint)
    }
    $entry = Get-HttpSysEntry -Binding ([string] $Action.binding) -Sni (($sslFlags -band 1) -eq 1 -and [string] $Action.binding -notmatch ':$')
    return [pscustomobject]@{ Binding = $binding[0]; Entry = $entry }
}

function Invoke-SetBinding {
    param($Action, $Before)
    $site, $thumbprint = [string] $Action.site, ([string] $Action.thumbprint).ToUpperInvariant()
    $target = Get-RebindTarget -Action $Action
    $entry = $target.Entry
    $current = Read-SslCertEntry -Key $entry.Key
    if ($null -eq $current) {
        $target.Binding.AddSslCertificate($thumbprint, 'my')
    } else {
        $Before.thumbprint = $current.Thumbprint.ToUpperInvariant()
        $Before.settings = ConvertTo-SettingStrings -Settings $current.Settings
        $wanted = $current.Settings
        $planned = Get-OptionalProperty -InputObject $Action -Name 'settings'
        if ($null -ne $planned) { $wanted = ConvertFrom-SettingStrings -Strings @($planned) }
        $arguments = @('http', 'update', 'sslcert', $entry.Argument, "certhash=$thumbprint", ('appid=' + $wanted.AppId), 'certstorename=MY')
        $arguments += ConvertTo-NetshOption -Settings $wanted -Argument $entry.Argument
        $result = Invoke-Native -FilePath 'netsh.exe' -ArgumentList $arguments
        if ($result.ExitCode -ne 0) { throw ('netsh http update sslcert failed (exit code {0}): {1}' -f $result.ExitCode, $result.Output) }
        $after = Read-SslCertEntry -Key $entry.Key
        $changed = @($HttpSysDefaults.Keys | Where-Object { $null -eq $after -or ("" + $after.Settings[$_]) -ne ("" + $wanted[$_]) } | ForEach-Object {
                $now = $null
                if ($null -ne $after) { $now = $after.Settings[$_] }
                '{0} {1} -> {2}' -f $_, $wanted[$_], $now
            })
        if ($changed.Count -gt 0) { throw ('netsh http update sslcert changed the settings of {0}: {1}.' -f $entry.Argument, ($changed -join '; ')) }
    }
    $now = Read-SslCertEntry -Key $entry.Key
    $served = ''
    if ($null -ne $now) { $served = $now.Thumbprint }
    if ($served.ToUpperInvariant() -ne $thumbprint) { throw ('{0} still serves {1}.' -f $entry.Argument, $served) }
    return ('{0} {1} serves {2}' -f $site, $Action.binding, $thumbprint)
}

function Get-ServiceProcessText {
    # "name (PID n)" of the process behind a service (Win32_Service.ProcessId), for messages.
    param([string] $Name)
    try {
        $processId = [int] (Get-CimInstance -ClassName Win32_Service -Filter ("Name='{0}'" -f ($Name -replace "'", "''")) -OperationTimeoutSec $CimTimeoutSeconds -ErrorAction Stop).ProcessId
    } catch {
        return 'unknown'
    }
    try {
        $processName = [string] (Get-Process -Id $processId -ErrorAction Stop).ProcessName
    } catch {
        $processName = 'a process'
    }
    return ('{0} (PID {1})' -f $processName, $processId)
}

function Invoke-RestartService {
    # ServiceController rather than Restart-Service: Restart-Service waits for ever on a
    # service stuck in StopPending. Each phase waits at most $ServiceTimeoutSeconds.
    param($Action, $Before)
    $service = Get-Service -Name ([string] $Action.name) -ErrorAction Stop
    $Before.state = [string] $service.Status
    $started = Get-Date
    $timeout = [TimeSpan]::FromSeconds($ServiceTimeoutSeconds)
    if ($service.Status -eq 'Running') { $service.Stop() }
    try {
        $service.WaitForStatus('Stopped', $timeout)
    } catch {
        $service.Refresh()
        $Before.stuck_process = Get-ServiceProcessText -Name $service.Name
        throw ("Service '{0}' did not stop within {1} s (it is {2}); its process {3} is still running. End that process (or restart the server), then start the service." -f $service.Name, $ServiceTimeoutSeconds, $service.Status, $Before.stuck_process)
    }
    try {
        $service.Start()
        $service.WaitForStatus('Running', $timeout)
        # A service that cannot open its certificate often stops right after starting.
        Start-Sleep -Seconds $ServiceSettleSeconds -ErrorAction Stop
        $service.Refresh()
        if ($service.Status -ne 'Running') { throw 'it stopped right after starting.' }
    } catch {
        $service.Refresh()
        $reason = $_.Exception
        if ($null -ne $reason.InnerException) { $reason = $reason.InnerException }
        $message = "Service '{0}' did not start: {1} (it is {2})." -f $service.Name, $reason.Message, $service.Status
        throw (('{0} {1}' -f $message, (Get-RecentErrorText -Since $started)).Trim())
    }
    return ('{0} is Running' -f $service.Name)
}

function Invoke-RecyclePool {
    param($Action, $Before)
    Import-IisModule
    $name = [string] $Action.name
    $Before.state = [string] (Get-WebAppPoolState -Name $name).Value
    $started = Get-Date
    if ($Before.state -eq 'Started') { Restart-WebAppPool -Name $name } else { Start-WebAppPool -Name $name }
    $deadline = (Get-Date).AddSeconds($PoolTimeoutSeconds)
    $state = [string] (Get-WebAppPoolState -Name $name).Value
    while ($state -ne 'Started' -and (Get-Date) -lt $deadline) {
        Start-Sleep -Milliseconds 500
        $state = [string] (Get-WebAppPoolState -Name $name).Value
    }
    if ($state -ne 'Started') {
        throw (("Application pool '{0}' is {1} after starting it. {2}" -f $name, $state, (Get-RecentErrorText -Since $started)).Trim())
    }
    $verb = 'started'
    if ($Before.state -eq 'Started') { $verb = 'recycled' }
    return ('{0} {1}, Started' -f $name, $verb)
}

function Invoke-RestoreFile {
    param($Action, $Before)
    $path, $backup = [string] $Action.path, [string] $Action.backup
    $Before.sha256 = Get-Sha256 -Path $path
    if (-not (Test-Path -LiteralPath $backup -PathType Leaf)) { return ('no backup {0}: {1} was not changed' -f $backup, $path) }
    $expected = Get-OptionalProperty -InputObject $Action -Name 'expected_sha256'
    if ($null -ne $expected) {
        $accepted = @(([string] $expected).ToUpperInvariant(), (Get-Sha256 -Path $backup))
        if ($accepted -notcontains $Before.sha256) {
            throw ("'{0}' was changed after the run (SHA-256 {1}); not overwritten." -f $path, $Before.sha256)
        }
    }
    Write-FileInPlace -Path $path -Bytes ([System.IO.File]::ReadAllBytes($backup))
    $Before.restored = $true
    return ('restored from {0}' -f $backup)
}

function Invoke-RemoveAuthority {
    param($Action, $Before)
    $thumbprint = ([string] $Action.thumbprint).ToUpperInvariant()
    $path = Join-Path -Path $CaStorePath -ChildPath $thumbprint
    $Before.existed = Test-Path -LiteralPath $path
    if (-not $Before.existed) { return 'not there' }
    Remove-Item -LiteralPath $path -ErrorAction Stop
    return 'removed'
}

function New-Before {
    # The "before" facts of an action, with their defaults until the action finds them out.
    param([string] $Kind)
    switch ($Kind) {
        'import-pfx' { return [ordered]@{ present = @(); with_key = @(); key_provider = $null; authorities_added = @() } }
        'write-file' { return [ordered]@{ sha256 = $null; backup = $null } }
        'grant-read' { return [ordered]@{ key_file = $null; could_read = $false } }
        'set-binding' { return [ordered]@{ thumbprint = $null; settings = $null } }
        'restart-service' { return [ordered]@{ state = $null; stuck_process = $null } }
        'recycle-pool' { return [ordered]@{ state = $null } }
        'restore-file' { return [ordered]@{ sha256 = $null; restored = $false } }
        'remove-authority' { return [ordered]@{ existed = $false } }
    }
    throw ("Unknown action '{0}'." -f $Kind)
}

function Invoke-Action {
    param($Action, $Before)
    switch ([string] $Action.action) {
        'import-pfx' { return Invoke-ImportPfx -Action $Action -Before $Before }
        'write-file' { return Invoke-WriteFile -Action $Action -Before $Before }
        'grant-read' { return Invoke-GrantRead -Action $Action -Before $Before }
        'set-binding' { return Invoke-SetBinding -Action $Action -Before $Before }
        'restart-service' { return Invoke-RestartService -Action $Action -Before $Before }
        'recycle-pool' { return Invoke-RecyclePool -Action $Action -Before $Before }
        'restore-file' { return Invoke-RestoreFile -Action $Action -Before $Before }
        'remove-authority' { return Invoke-RemoveAuthority -Action $Action -Before $Before }
    }
    throw ("Unknown action '{0}'." -f $Action.action)
}

function New-Result {
    param([int] $Index, $Action, [bool] $Ok, [string] $Message, $Before)
    return [ordered]@{ index = $Index; action = [string] $Action.action; ok = $Ok; message = $Message; before = $Before }
}

function New-Verdict {
    # One environment check of -Check: its name, whether it passed, and what it found.
    param([string] $Name, [bool] $Ok, [string] $Message)
    return [ordered]@{ name = $Name; ok = $Ok; message = $Message }
}

function Test-Session {
    # -Check: elevated administrator, WebAdministration when IIS is used (Full Language mode is
    # checked before anything else runs: without it the script stops with that error).
    param($ActionList)
    $verdicts = New-Object System.Collections.Generic.List[object]
    $principal = New-Object System.Security.Principal.WindowsPrincipal -ArgumentList ([System.Security.Principal.WindowsIdentity]::GetCurrent()) -ErrorAction Stop
    $elevated = $principal.IsInRole([System.Security.Principal.WindowsBuiltInRole]::Administrator)
    $message = 'the session runs as an elevated administrator'
    if (-not $elevated) { $message = 'the session is not an elevated administrator: connect as a member of the local Administrators group (for a local account, LocalAccountTokenFilterPolicy=1)' }
    $verdicts.Add((New-Verdict -Name 'elevated-administrator' -Ok $elevated -Message $message))
    $verdicts.Add((New-Verdict -Name 'full-language' -Ok $true -Message 'PowerShell runs in FullLanguage mode'))
    $iis = @($ActionList | Where-Object { @('set-binding', 'recycle-pool') -contains [string] $_.action })
    if ($iis.Count -gt 0) {
        try {
            Import-IisModule
            $verdicts.Add((New-Verdict -Name 'web-administration' -Ok $true -Message 'the WebAdministration module loads'))
        } catch {
            $verdicts.Add((New-Verdict -Name 'web-administration' -Ok $false -Message ('the WebAdministration module does not load ({0}): install the IIS Management Scripts and Tools feature' -f $_.Exception.Message)))
        }
    }
    return , $verdicts.ToArray()
}

function Get-AccountName {
    # The account name of a SID for a message (the SID itself when it does not translate).
    param([string] $Sid)
    try {
        return (New-Object System.Security.Principal.SecurityIdentifier -ArgumentList $Sid -ErrorAction Stop).Translate([System.Security.Principal.NTAccount]).Value
    } catch {
        return $Sid
    }
}

function Get-TokenSids {
    # The SIDs of this session's token: the user and every group.
    $identity = [System.Security.Principal.WindowsIdentity]::GetCurrent()
    return @(@($identity.User.Value) + @($identity.Groups | ForEach-Object { $_.Value }))
}

function Get-WriteDenial {
    # Why this session may not write the file or create a file in the folder (WriteData /
    # AddFile, bit 0x2), from its DACL and our token's SIDs; $null when it may.
    param([string] $Path)
    $sids = Get-TokenSids
    $allowed = $false
    # Rules read as SIDs: names are localized and may not translate back (see Test-AccountCanRead).
    $acl = Get-Acl -LiteralPath $Path -ErrorAction Stop
    foreach ($rule in @($acl.GetAccessRules($true, $true, [System.Security.Principal.SecurityIdentifier]))) {
        $rights = [int] $rule.FileSystemRights
        $writes = (($rights -band 2) -ne 0) -or (($rights -band 0x40000000) -ne 0) -or (($rights -band 0x10000000) -ne 0)
        if (-not $writes) { continue }
        $ruleSid = [string] $rule.IdentityReference.Value
        if ($sids -notcontains $ruleSid) { continue }
        if ([string] $rule.AccessControlType -eq 'Deny') { return ('its ACL denies writing to {0}' -f (Get-AccountName -Sid $ruleSid)) }
        $allowed = $true
    }
    if (-not $allowed) { return 'its ACL gives this account no write access' }
    return $null
}

function Test-ImportPfx {
    param($Action, $Before)
    $wanted = Get-WantedImport -Action $Action -Before $Before
    $index = [int] $Action.index
    if ($wanted.Count -eq 0) { return ('would skip {0}: already in the store with its key' -f ($Action.thumbprints -join ', ')) }
    if ($null -eq $PfxPassword) { throw '-PfxPassword is needed to import a PFX file.' }
    # Opened in memory: EphemeralKeySet (.NET 4.7.2+) writes no key file at all; before that a
    # temporary user key without PersistKeySet, which Reset() deletes at once.
    $flags = 'EphemeralKeySet' -as [System.Security.Cryptography.X509Certificates.X509KeyStorageFlags]
    if ($null -eq $flags) { $flags = [System.Security.Cryptography.X509Certificates.X509KeyStorageFlags]::UserKeySet }
    $opened = New-Object System.Security.Cryptography.X509Certificates.X509Certificate2 -ArgumentList ([Convert]::FromBase64String($PfxFiles[$index])), $PfxPassword, $flags -ErrorAction Stop
    $thumbprint = ([string] $opened.Thumbprint).ToUpperInvariant()
    $opened.Reset()
    if ($Action.thumbprints -notcontains $thumbprint) { throw ('The PFX file holds {0}, not {1}.' -f $thumbprint, ($Action.thumbprints -join ', ')) }
    $store = New-Object System.Security.Cryptography.X509Certificates.X509Store('My', 'LocalMachine')
    try {
        $store.Open('ReadWrite')
    } catch {
        throw ('LocalMachine\My cannot be opened for writing ({0}): run as an elevated administrator.' -f $_.Exception.Message)
    } finally {
        $store.Close()
    }
    return ('would import {0} (the password opens the PFX; LocalMachine\My is writable)' -f ($wanted -join ', '))
}

function Test-WriteFile {
    param($Action, $Before)
    $path = [string] $Action.path
    $Before.sha256 = Get-Sha256 -Path $path
    if ($null -eq $Before.sha256) { throw ("Cannot find path '{0}' because it does not exist." -f $path) }
    if ($Before.sha256 -ne ([string] $Action.expected_sha256).ToUpperInvariant()) {
        throw ("'{0}' changed since planning (SHA-256 {1}): run plan again." -f $path, $Before.sha256)
    }
    $denial = Get-WriteDenial -Path $path
    if ($null -ne $denial) { throw ("'{0}' cannot be written: {1}. Give Administrators write on it (icacls)." -f $path, $denial) }
    $folder = [System.IO.Path]::GetDirectoryName($path)
    $denial = Get-WriteDenial -Path $folder
    if ($null -ne $denial) { throw ("The backup cannot be made beside '{0}': {1}. Give Administrators write on the folder." -f $path, $denial) }
    $attributes = (Get-Item -LiteralPath $path -Force -ErrorAction Stop).Attributes
    $note = ''
    if (($attributes -band ([System.IO.FileAttributes]::ReadOnly -bor [System.IO.FileAttributes]::Hidden)) -ne 0) { $note = (' (its attributes {0} cleared around the write)' -f $attributes) }
    return ('would write {0} bytes, backup beside it{1}' -f ([Convert]::FromBase64String($FileContents[[int] $Action.content_index])).Length, $note)
}

function Test-GrantRead {
    param($Action, $Before, $ActionList, [int] $Index)
    $account, $sid = [string] $Action.account, [string] $Action.sid
    if ($sid -notmatch '^S-1-[0-9-]+$') { throw ("'{0}' is not a SID." -f $sid) }
    $thumbprint = ([string] $Action.thumbprint).ToUpperInvariant()
    $certificatePath = Join-Path -Path $StorePath -ChildPath $thumbprint
    if (-not (Test-Path -LiteralPath $certificatePath)) {
        if (Test-ImportedBefore -ActionList $ActionList -Index $Index -Thumbprint $thumbprint) { return ('would grant {0} read on the key file the import creates' -f $account) }
        throw ("Cannot find path '{0}' because it does not exist." -f $certificatePath)
    }
    $keyFile = Get-KeyFilePath -Certificate (Get-Item -LiteralPath $certificatePath -ErrorAction Stop)
    $Before.key_file = $keyFile
    $Before.could_read = Test-AccountCanRead -Path $keyFile -Sid $sid
    try {
        $stream = New-Object System.IO.FileStream -ArgumentList $keyFile, ([System.IO.FileMode]::Open), ([System.Security.AccessControl.FileSystemRights]::ChangePermissions), ([System.IO.FileShare]::ReadWrite), 4096, ([System.IO.FileOptions]::None) -ErrorAction Stop
        $stream.Dispose()
    } catch {
        throw ("The ACL of the key file {0} cannot be changed by this account (no WRITE_DAC): take ownership of it as an administrator, or grant {1} read by hand." -f $keyFile, $account)
    }
    return ('would grant {0} read on {1}' -f $account, $keyFile)
}

function Test-ImportedBefore {
    # True when an import-pfx earlier in the run brings this thumbprint.
    param($ActionList, [int] $Index, [string] $Thumbprint)
    for ($earlier = 0; $earlier -lt $Index; $earlier++) {
        $action = $ActionList[$earlier]
        if ([string] $action.action -ne 'import-pfx') { continue }
        if (@($action.thumbprints | ForEach-Object { ([string] $_).ToUpperInvariant() }) -contains $Thumbprint) { return $true }
    }
    return $false
}

function Test-SetBinding {
    param($Action, $Before, $ActionList, [int] $Index)
    $site, $thumbprint = [string] $Action.site, ([string] $Action.thumbprint).ToUpperInvariant()
    $entry = (Get-RebindTarget -Action $Action -Imported (Test-ImportedBefore -ActionList $ActionList -Index $Index -Thumbprint $thumbprint)).Entry
    $current = Read-SslCertEntry -Key $entry.Key
    if ($null -eq $current) { return ('would add {0} to {1} {2}' -f $thumbprint, $site, $Action.binding) }
    $Before.thumbprint = $current.Thumbprint.ToUpperInvariant()
    $Before.settings = ConvertTo-SettingStrings -Settings $current.Settings
    $wanted = $current.Settings
    $planned = Get-OptionalProperty -InputObject $Action -Name 'settings'
    if ($null -ne $planned) { $wanted = ConvertFrom-SettingStrings -Strings @($planned) }
    $options = ConvertTo-NetshOption -Settings $wanted -Argument $entry.Argument
    return ('would run netsh http update sslcert {0} certhash={1} ({2} setting(s) carried over)' -f $entry.Argument, $thumbprint, $options.Count)
}

function Test-RestartService {
    param($Action, $Before)
    $service = Get-Service -Name ([string] $Action.name) -ErrorAction Stop
    $Before.state = [string] $service.Status
    # ServiceController.StartType (.NET 4.6.1+), not WMI: apply itself never needs WMI here.
    $mode = [string] (Get-OptionalProperty -InputObject $service -Name 'StartType')
    if ($mode -eq 'Disabled') { throw ("Service '{0}' is disabled: it could be stopped but not started again. Set its start type (Set-Service -StartupType) first." -f $service.Name) }
    if (@('Running', 'Stopped') -notcontains $Before.state) { throw ("Service '{0}' is {1} now: wait until it settles (or end its process) and check again." -f $service.Name, $Before.state) }
    if ($Before.state -eq 'Running' -and -not $service.CanStop) { throw ("Service '{0}' does not accept a stop request: restart it by hand." -f $service.Name) }
    return ('would restart {0} (it is {1})' -f $service.Name, $Before.state)
}

function Test-RecyclePool {
    param($Action, $Before)
    Import-IisModule
    $name = [string] $Action.name
    $Before.state = [string] (Get-WebAppPoolState -Name $name).Value
    $verb = 'start'
    if ($Before.state -eq 'Started') { $verb = 'recycle' }
    return ('would {0} {1}' -f $verb, $name)
}

function Test-RestoreFile {
    param($Action, $Before)
    $path, $backup = [string] $Action.path, [string] $Action.backup
    $Before.sha256 = Get-Sha256 -Path $path
    if (-not (Test-Path -LiteralPath $backup -PathType Leaf)) { return ('would leave {0}: no backup {1}' -f $path, $backup) }
    $denial = Get-WriteDenial -Path $path
    if ($null -ne $denial) { throw ("'{0}' cannot be written: {1}. Give Administrators write on it (icacls)." -f $path, $denial) }
    return ('would restore {0} from {1}' -f $path, $backup)
}

function Test-RemoveAuthority {
    param($Action, $Before)
    $Before.existed = Test-Path -LiteralPath (Join-Path -Path $CaStorePath -ChildPath ([string] $Action.thumbprint).ToUpperInvariant())
    if (-not $Before.existed) { return 'would leave it: not there' }
    return 'would remove it'
}

function Test-Action {
    # -Check: the action's preconditions, changing nothing; the message says what it would do.
    param($Action, $Before, $ActionList, [int] $Index)
    switch ([string] $Action.action) {
        'import-pfx' { return Test-ImportPfx -Action $Action -Before $Before }
        'write-file' { return Test-WriteFile -Action $Action -Before $Before }
        'grant-read' { return Test-GrantRead -Action $Action -Before $Before -ActionList $ActionList -Index $Index }
        'set-binding' { return Test-SetBinding -Action $Action -Before $Before -ActionList $ActionList -Index $Index }
        'restart-service' { return Test-RestartService -Action $Action -Before $Before }
        'recycle-pool' { return Test-RecyclePool -Action $Action -Before $Before }
        'restore-file' { return Test-RestoreFile -Action $Action -Before $Before }
        'remove-authority' { return Test-RemoveAuthority -Action $Action -Before $Before }
    }
    throw ("Unknown action '{0}'." -f $Action.action)
}

function Test-ActionList {
    # -Check: every action's verdict (not stopping at a blocker); the first blocker's index.
    param($ActionList, $Results)
    $firstBlocker = $null
    for ($index = 0; $index -lt $ActionList.Count; $index++) {
        $action = $ActionList[$index]
        $before = New-Before -Kind ([string] $action.action)
        try {
            $message = [string] (Test-Action -Action $action -Before $before -ActionList $ActionList -Index $index)
            $Results.Add((New-Result -Index $index -Action $action -Ok $true -Message $message -Before $before))
        } catch {
            $Results.Add((New-Result -Index $index -Action $action -Ok $false -Message $_.Exception.Message -Before $before))
            if ($null -eq $firstBlocker) { $firstBlocker = $index }
        }
    }
    return $firstBlocker
}

function Find-ChangedFile {
    # Before anything runs: the first write-file whose file no longer has the planned hash.
    param($ActionList)
    for ($index = 0; $index -lt $ActionList.Count; $index++) {
        $action = $ActionList[$index]
        if ([string] $action.action -ne 'write-file') { continue }
        $current = Get-Sha256 -Path ([string] $action.path)
        if ($current -eq ([string] $action.expected_sha256).ToUpperInvariant()) { continue }
        $message = "Cannot find path '{0}' because it does not exist." -f $action.path
        if ($null -ne $current) {
            $message = "'{0}' changed since planning (SHA-256 {1}, expected {2}); nothing was changed." -f $action.path, $current, ([string] $action.expected_sha256).ToUpperInvariant()
        }
        return New-Result -Index $index -Action $action -Ok $false -Message $message -Before ([ordered]@{ sha256 = $current; backup = $null })
    }
    return $null
}

function Invoke-ActionList {
    # The hashes first (a refusal runs nothing), then the actions up to the first failure,
    # whose index is returned ($null when all succeeded).
    param($ActionList, $Results)
    $refusal = Find-ChangedFile -ActionList $ActionList
    if ($null -ne $refusal) {
        $Results.Add($refusal)
        return $refusal.index
    }
    for ($index = 0; $index -lt $ActionList.Count; $index++) {
        $action = $ActionList[$index]
        $before = $null
        try {
            $before = New-Before -Kind ([string] $action.action)
            $message = [string] (Invoke-Action -Action $action -Before $before)
            $Results.Add((New-Result -Index $index -Action $action -Ok $true -Message $message -Before $before))
        } catch {
            $Results.Add((New-Result -Index $index -Action $action -Ok $false -Message $_.Exception.Message -Before $before))
            return $index
        }
    }
    return $null
}

function Read-ActionList {
    # -Actions as a list, every action known and every content_index present, before any runs.
    if ([string]::IsNullOrEmpty($Actions)) { throw '-Actions is required; nothing was changed.' }
    if ([string]::IsNullOrEmpty($RunId)) { throw '-RunId is required; nothing was changed.' }
    $list = New-Object System.Collections.Generic.List[object]
    # foreach enumerates the parsed array (Windows PowerShell 5.1 emits it as one object).
    foreach ($item in (ConvertFrom-Json -InputObject $Actions -ErrorAction Stop)) { $list.Add($item) }
    for ($index = 0; $index -lt $list.Count; $index++) {
        $kind = [string] (Get-OptionalProperty -InputObject $list[$index] -Name 'action')
        if ($KnownActions -notcontains $kind) { throw ("Action {0} is '{1}', which this apply.ps1 does not know; nothing was changed." -f $index, $kind) }
        if ($kind -ne 'write-file') { continue }
        $position = Get-OptionalProperty -InputObject $list[$index] -Name 'content_index'
        if ($null -eq $position -or [int] $position -lt 0 -or [int] $position -ge $FileContents.Count) {
            throw ('Action {0}: -FileContents has no file number {1}; nothing was changed.' -f $index, $position)
        }
    }
    return , $list
}

function Read-PostState {
    # gather.ps1 (its text from -PostStateScript) over the state the actions reached: the one
    # JSON document it wrote, as text. Run through ScriptBlock.Invoke, with gather.ps1's own
    # parameters in their declared order (-ServicePatterns, -ConfigFiles).
    param([string] $ScriptText)
    if ($ScriptText -notmatch '\A# cosdoc-certs-script: gather\r?\n') {
        throw '-PostStateScript is not gather.ps1; the post-state was not read.'
    }
    $reader = [scriptblock]::Create($ScriptText)
    $output = @($reader.Invoke($ServicePatterns, $ConfigFiles))
    if ($output.Count -ne 1) { throw ('gather.ps1 wrote {0} objects instead of one document.' -f $output.Count) }
    return [string] $output[0]
}

$KnownActions = @('import-pfx', 'write-file', 'grant-read', 'set-binding', 'restart-service', 'recycle-pool', 'restore-file', 'remove-authority')
$results = New-Object System.Collections.Generic.List[object]
$failedIndex = $null
$scriptError = $null
$environment = @()
try {
    $actionList = Read-ActionList
    if ($Check) {
        $environment = Test-Session -ActionList $actionList
        $failedIndex = Test-ActionList -ActionList $actionList -Results $results
    } else {
        $failedIndex = Invoke-ActionList -ActionList $actionList -Results $results
    }
} catch {
    $scriptError = [string] $_.Exception.Message
}

$completed = @($results | Where-Object { $_.ok }).Count
$document = [ordered]@{
    schema_version = $SchemaVersion
    results        = $results.ToArray()
    completed      = $completed
    failed_index   = $failedIndex
    error          = $scriptError
}
if ($Check) {
    $document.check = $true
    $document.environment = @($environment)
} elseif (-not [string]::IsNullOrEmpty($PostStateScript)) {
    # Read only after a run in which every action succeeded; a failed read is reported, not
    # turned into a failed run.
    $document.post_state = $null
    $document.post_state_error = $null
    if ($null -eq $failedIndex -and $null -eq $scriptError) {
        try {
            $document.post_state = Read-PostState -ScriptText $PostStateScript
        } catch {
            $document.post_state_error = [string] $_.Exception.Message
        }
    } else {
        $document.post_state_error = 'not read: the run did not complete'
    }
}
ConvertTo-Json -InputObject $document -Depth 10 -Compress
