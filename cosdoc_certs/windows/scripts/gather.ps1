# cosdoc-certs-script: gather
<#
.SYNOPSIS
    Gathers the certificate state of a CosDoc application server as one compact JSON document.

.DESCRIPTION
    Read-only. Returns one JSON string (schema version 2, described in
    cosdoc_certs/windows/gather.py) with raw facts; Python decides what they mean. It is
    written on every way out: when gathering fails as a whole (Constrained Language Mode
    included), the document is {"schemaVersion": 2, "error": "<why>"}. Otherwise it has:
      - services whose name matches one of -ServicePatterns (Win32_Service: name, state,
        StartName, PathName, nssm's AppDirectory from the Parameters key, the install folder)
        and the SID of the account with the server's own (localized) name for it;
      - whether IIS is installed (W3SVC, applicationHost.config) and WebAdministration is there;
        if both, IIS sites, applications, application pools (with the identity's SID) and
        HTTPS bindings;
      - what `netsh http show sslcert` prints (http.sys: what is served), parsed in Python;
      - every certificate in Cert:\LocalMachine\My: DER (base64), private key yes/no, what
        .NET opened the key as (CNG or CAPI) and its provider, the key file found by its unique
        name in every machine key folder, and the SIDs (and names) allowed to read it;
      - the bytes (base64) of each of -ConfigFiles (paths relative to a folder) in every
        service install folder and IIS application path, each read on its own: a file that
        cannot be read carries its error instead of stopping the script.
    Constrained Language Mode stops the script at once with one error that says so.

    Windows Server 2016-2022 (Windows PowerShell 5.1, .NET Framework >= 4.6). On Server 2012 R2
    with .NET 4.5 RSACertificateExtensions is missing: the key is then read from
    $cert.PrivateKey (CAPI only; CNG keys are reported with keyError).

.EXAMPLE
    & .\gather.ps1 -ServicePatterns 'Digihelse*','KPR*' -ConfigFiles 'appsettings.json'
#>
[CmdletBinding()]
param(
    [string[]] $ServicePatterns = @(),
    [string[]] $ConfigFiles = @('appsettings.json')
)

# Checked first: in Constrained Language Mode (AppLocker/WDAC) every .NET call below fails.
# Only a plain hashtable and ConvertTo-Json here: both work in that mode.
if ($ExecutionContext.SessionState.LanguageMode -ne 'FullLanguage') {
    $refusal = 'gather.ps1 cannot run: PowerShell on this server is in Constrained Language Mode (AppLocker or WDAC), which blocks the .NET calls it needs; it needs FullLanguage (now: {0}). Run it from a session the policy exempts, or ask the server''s administrators to allow the script.' -f $ExecutionContext.SessionState.LanguageMode
    ConvertTo-Json -InputObject @{ schemaVersion = 2; error = $refusal } -Compress
    return
}

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

$SchemaVersion = 2
$Invariant = [System.Globalization.CultureInfo]::InvariantCulture
$RsaExtensions = 'System.Security.Cryptography.X509Certificates.RSACertificateExtensions' -as [type]
$EcdsaExtensions = 'System.Security.Cryptography.X509Certificates.ECDsaCertificateExtensions' -as [type]
$CimTimeoutSeconds = 60
$NativeTimeoutMilliseconds = 30000
$KeyFolders = @('Crypto\Keys', 'Crypto\RSA\MachineKeys', 'Crypto\SystemKeys')
# Lookup tables (filled by index, so that the only hash literals are the document's fields).
# The Service Control Manager's own StartName spellings, which NTAccount.Translate does not know.
$ScmAccounts = @{}
$ScmAccounts['LocalSystem'] = 'S-1-5-18'; $ScmAccounts['.\LocalSystem'] = 'S-1-5-18'
$ScmAccounts['NT AUTHORITY\LocalService'] = 'S-1-5-19'; $ScmAccounts['NT AUTHORITY\NetworkService'] = 'S-1-5-20'
$PoolAccounts = @{}
$PoolAccounts['LocalSystem'] = 'S-1-5-18'; $PoolAccounts['LocalService'] = 'S-1-5-19'; $PoolAccounts['NetworkService'] = 'S-1-5-20'

function ConvertTo-IsoUtc {
    # Invariant culture: some cultures (nb-NO on older .NET) use '.' as the time separator.
    param([datetime] $Value)
    return $Value.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", $Invariant)
}

function Get-OptionalProperty {
    # A property that may not exist on this IIS/Windows version, without tripping StrictMode.
    param($InputObject, [string] $Name)
    if ($null -eq $InputObject) { return $null }
    $property = $InputObject.PSObject.Properties[$Name]
    if ($null -eq $property) { return $null }
    return $property.Value
}

function Get-InstallFolder {
    # Where a service's application runs from (the same rules as install_folder in
    # cosdoc_certs/windows/gather.py): nssm's AppDirectory; the first .dll argument of
    # dotnet.exe, the first .cmd/.bat of cmd.exe; else the executable's folder.
    param([string] $PathName, [string] $AppDirectory)
    if (-not [string]::IsNullOrWhiteSpace($AppDirectory)) { return $AppDirectory.Trim() }
    if ([string]::IsNullOrWhiteSpace($PathName)) { return $null }
    $text = $PathName.Trim()
    if ($text.StartsWith('"')) {
        $end = $text.IndexOf('"', 1)
        if ($end -lt 0) { $executable = $text.Substring(1); $rest = '' } else { $executable = $text.Substring(1, $end - 1); $rest = $text.Substring($end + 1) }
    } else {
        $match = [regex]::Match($text, '^(.+?\.exe)(?:\s|$)', 'IgnoreCase')
        if ($match.Success) { $executable = $match.Groups[1].Value } else { $executable = ($text -split '\s+', 2)[0] }
        $rest = $text.Substring($executable.Length)
    }
    # Programs that run an application given as an argument, and that argument's extensions.
    $hosts = @{}
    $hosts['dotnet.exe'] = @('.dll'); $hosts['cmd.exe'] = @('.cmd', '.bat')
    $extensions = $hosts[[System.IO.Path]::GetFileName($executable).ToLowerInvariant()]
    if ($null -ne $extensions) {
        foreach ($argument in [regex]::Matches($rest, '"([^"]*)"|(\S+)')) {
            $candidate = $argument.Groups[1].Value
            if ($candidate -eq '') { $candidate = $argument.Groups[2].Value }
            foreach ($extension in $extensions) {
                if ($candidate.EndsWith($extension, [StringComparison]::OrdinalIgnoreCase)) { return [System.IO.Path]::GetDirectoryName($candidate) }
            }
        }
    }
    return [System.IO.Path]::GetDirectoryName($executable)
}

function Resolve-Identity {
    # An account as this server knows it: its SID (from a name, '.\x' read as COMPUTERNAME\x,
    # or given) and the server's own, possibly localized, name for it; or why not.
    param([string] $Name, [string] $Sid)
    $identity = [ordered]@{ sid = $null; name = $null; error = $null }
    try {
        if ([string]::IsNullOrEmpty($Sid)) {
            $spelling = $Name.Trim()
            if ($spelling.StartsWith('.\')) { $spelling = $env:COMPUTERNAME + $spelling.Substring(1) }
            $Sid = (New-Object -TypeName System.Security.Principal.NTAccount -ArgumentList $spelling -ErrorAction Stop).Translate([System.Security.Principal.SecurityIdentifier]).Value
        }
        $identity.sid = $Sid
    } catch {
        $identity.error = $_.Exception.Message
        return $identity
    }
    try {
        $identity.name = (New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $Sid -ErrorAction Stop).Translate([System.Security.Principal.NTAccount]).Value
    } catch {
        $identity.name = $null  # a SID without a name here (a deleted account): the SID still compares
    }
    return $identity
}

function Get-ServiceParameter {
    # A value of the service's Parameters key (nssm keeps AppDirectory there), or $null.
    param([string] $Service, [string] $Name)
    try {
        $key = Get-ItemProperty -LiteralPath ('HKLM:\SYSTEM\CurrentControlSet\Services\{0}\Parameters' -f $Service) -Name $Name -ErrorAction Stop
        return [string] $key.$Name
    } catch {
        return $null
    }
}

function Invoke-NativeText {
    # A native command's exit code and output, killed after $NativeTimeoutMilliseconds.
    param([string] $FilePath, [string] $Arguments)
    $info = New-Object System.Diagnostics.ProcessStartInfo
    $info.FileName = $FilePath
    $info.Arguments = $Arguments
    $info.UseShellExecute = $false
    $info.RedirectStandardOutput = $true
    $info.RedirectStandardError = $true
    $info.CreateNoWindow = $true
    # netsh writes in the OEM code page of the display language (850/865 on a Norwegian server).
    $info.StandardOutputEncoding = [System.Text.Encoding]::GetEncoding([System.Globalization.CultureInfo]::CurrentCulture.TextInfo.OEMCodePage)
    $process = [System.Diagnostics.Process]::Start($info)
    $output = $process.StandardOutput.ReadToEndAsync()
    $errors = $process.StandardError.ReadToEndAsync()
    if (-not $process.WaitForExit($NativeTimeoutMilliseconds)) {
        $process.Kill()
        return [ordered]@{ exitCode = -1; output = ('{0} {1} did not finish within {2} s' -f $FilePath, $Arguments, ($NativeTimeoutMilliseconds / 1000)) }
    }
    return [ordered]@{ exitCode = $process.ExitCode; output = $output.Result + $errors.Result }
}

function Get-ServiceFacts {
    # Win32_Service rather than Get-Service: it has the account (StartName) and PathName.
    param([string[]] $Patterns)
    $services = New-Object System.Collections.Generic.List[object]
    if ($Patterns.Count -eq 0) { return , $services.ToArray() }
    foreach ($service in @(Get-CimInstance -ClassName Win32_Service -OperationTimeoutSec $CimTimeoutSeconds -ErrorAction Stop)) {
        $name = [string] $service.Name
        $matched = @($Patterns | Where-Object { $name -like $_ })
        if ($matched.Count -eq 0) { continue }
        $account = [string] $service.StartName
        $appDirectory = Get-ServiceParameter -Service $name -Name 'AppDirectory'
        $services.Add([ordered]@{
            name          = $name
            displayName   = [string] $service.DisplayName
            state         = [string] $service.State
            startMode     = [string] $service.StartMode
            account       = $account
            pathName      = [string] $service.PathName
            appDirectory  = $appDirectory
            installFolder = Get-InstallFolder -PathName ([string] $service.PathName) -AppDirectory $appDirectory
            identity      = Resolve-Identity -Name $account -Sid $ScmAccounts[$account]
        })
    }
    return , $services.ToArray()
}

function Get-SslFlags {
    # sslFlags is an integer on IIS 8+, sometimes rendered as flag names; absent on IIS 7.5.
    param($Binding)
    $value = Get-OptionalProperty -InputObject $Binding -Name 'sslFlags'
    if ($null -eq $value -or "$value" -eq '') { return 0 }
    $text = "$value"
    if ($text -match '^\d+$') { return [int] $text }
    $flags = 0
    if ($text -match 'Sni') { $flags = $flags -bor 1 }
    if ($text -match 'CentralCertStore') { $flags = $flags -bor 2 }
    return $flags
}

function Get-IisPresence {
    # IIS is there when W3SVC or applicationHost.config is, whatever PowerShell module exists.
    $installed = Test-Path -LiteralPath (Join-Path -Path $env:windir -ChildPath 'System32\inetsrv\config\applicationHost.config') -PathType Leaf
    if (-not $installed) {
        try { $installed = $null -ne (Get-Service -Name 'W3SVC' -ErrorAction Stop) } catch { $installed = $false }
    }
    $module = $null -ne (Get-Module -ListAvailable -Name WebAdministration -ErrorAction Stop)
    return [ordered]@{ installed = $installed; module = $module; error = $null }
}

function Get-PoolIdentity {
    param($Pool)
    $type = [string] $Pool.processModel.identityType
    if ($type -eq 'SpecificUser') { return Resolve-Identity -Name ([string] $Pool.processModel.userName) }
    if ($PoolAccounts.ContainsKey($type)) { return Resolve-Identity -Sid $PoolAccounts[$type] }
    return Resolve-Identity -Name ('IIS APPPOOL\' + [string] $Pool.name)
}

function Get-IisFacts {
    # Sites, applications (the root application "/" included), pools and HTTPS bindings.
    Import-Module -Name WebAdministration -Verbose:$false -ErrorAction Stop
    $sites = New-Object System.Collections.Generic.List[object]
    $applications = New-Object System.Collections.Generic.List[object]
    $bindings = New-Object System.Collections.Generic.List[object]
    foreach ($site in @(Get-ChildItem -Path 'IIS:\Sites' -ErrorAction Stop)) {
        $siteName = [string] $site.name
        $sites.Add([ordered]@{
            name         = $siteName
            id           = [int] $site.id
            physicalPath = [Environment]::ExpandEnvironmentVariables([string] $site.physicalPath)
            appPool      = [string] $site.applicationPool
        })
        $applications.Add([ordered]@{
            site         = $siteName
            path         = '/'
            physicalPath = [Environment]::ExpandEnvironmentVariables([string] $site.physicalPath)
            appPool      = [string] $site.applicationPool
        })
        foreach ($application in @(Get-WebApplication -Site $siteName -ErrorAction Stop)) {
            $applications.Add([ordered]@{
                site         = $siteName
                path         = [string] $application.path
                physicalPath = [Environment]::ExpandEnvironmentVariables([string] $application.PhysicalPath)
                appPool      = [string] $application.applicationPool
            })
        }
        foreach ($binding in @(Get-WebBinding -Name $siteName -Protocol 'https' -ErrorAction Stop)) {
            $bindings.Add([ordered]@{
                site                 = $siteName
                bindingInformation   = [string] $binding.bindingInformation
                sslFlags             = Get-SslFlags -Binding $binding
                certificateHash      = [string] (Get-OptionalProperty -InputObject $binding -Name 'certificateHash')
                certificateStoreName = [string] (Get-OptionalProperty -InputObject $binding -Name 'certificateStoreName')
            })
        }
    }
    $pools = New-Object System.Collections.Generic.List[object]
    foreach ($pool in @(Get-ChildItem -Path 'IIS:\AppPools' -ErrorAction Stop)) {
        $state = Get-OptionalProperty -InputObject $pool -Name 'state'
        if ($null -eq $state) { $state = (Get-WebAppPoolState -Name $pool.name -ErrorAction Stop).Value }
        $pools.Add([ordered]@{
            name         = [string] $pool.name
            state        = [string] $state
            identityType = [string] $pool.processModel.identityType
            userName     = [string] $pool.processModel.userName
            identity     = Get-PoolIdentity -Pool $pool
        })
    }
    # http.sys (what is actually served) comes from netsh, not IIS:\SslBindings: that provider
    # throws on entries it cannot map (another program's binding, a null store name).
    return [ordered]@{
        sites        = $sites.ToArray()
        applications = $applications.ToArray()
        appPools     = $pools.ToArray()
        bindings     = $bindings.ToArray()
    }
}

function Get-KeyReaders {
    # SIDs with an Allow rule that includes reading the file (ReadData, GENERIC_READ/ALL), each
    # with the server's own name: rules are read as SIDs, never as (localized) names.
    param([string] $Path)
    $readers = New-Object System.Collections.Generic.List[object]
    $seen = New-Object 'System.Collections.Generic.HashSet[string]'
    $acl = Get-Acl -LiteralPath $Path -ErrorAction Stop
    foreach ($rule in @($acl.GetAccessRules($true, $true, [System.Security.Principal.SecurityIdentifier]))) {
        if ([string] $rule.AccessControlType -ne 'Allow') { continue }
        $rights = [int] $rule.FileSystemRights
        $canRead = (($rights -band 1) -ne 0) -or (($rights -band 0x10000000) -ne 0) -or ($rights -lt 0)
        $sid = [string] $rule.IdentityReference.Value
        if ($canRead -and $seen.Add($sid)) { $readers.Add((Resolve-Identity -Sid $sid)) }
    }
    return , $readers.ToArray()
}

function Find-KeyFile {
    # The first machine key folder with a file named $UniqueName, and that file: @(folder, path);
    # $null when no folder has it.
    param([string] $UniqueName)
    foreach ($folder in $KeyFolders) {
        $path = [System.IO.Path]::Combine($env:ProgramData, 'Microsoft', $folder, $UniqueName)
        if ([System.IO.File]::Exists($path)) { return , @($folder, $path) }
    }
    return $null
}

function Get-PrivateKeyObject {
    # .NET >= 4.6: RSACng for CNG keys, RSACryptoServiceProvider for CAPI keys; else CAPI only.
    param([System.Security.Cryptography.X509Certificates.X509Certificate2] $Certificate)
    if ($null -eq $RsaExtensions) { return $Certificate.PrivateKey }
    $key = $RsaExtensions::GetRSAPrivateKey($Certificate)
    if ($null -eq $key -and $null -ne $EcdsaExtensions) { $key = $EcdsaExtensions::GetECDsaPrivateKey($Certificate) }
    return $key
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

function Get-KeyFacts {
    # What .NET opened the key as, its provider and unique name, and the file of that name in
    # any machine key folder: .NET 4.6+ opens software CAPI keys through CNG too (an RSACng
    # whose UniqueName is a file in RSA\MachineKeys), so the object type says nothing about
    # the folder. A TPM/smart-card/HSM provider has no file: keyFile stays null.
    param([System.Security.Cryptography.X509Certificates.X509Certificate2] $Certificate)
    $facts = [ordered]@{ keyStorage = $null; keyProvider = $null; keyFolder = $null; keyFile = $null; readers = @(); keyError = $null }
    if (-not $Certificate.HasPrivateKey) { return $facts }
    $key = $null
    try {
        $key = Get-PrivateKeyObject -Certificate $Certificate
        $cngKey = Get-OptionalProperty -InputObject $key -Name 'Key'
        $uniqueName = $null
        if ($cngKey -is [System.Security.Cryptography.CngKey]) {
            $facts.keyStorage = 'CNG'
            $facts.keyProvider = [string] $cngKey.Provider.Provider
            $uniqueName = [string] $cngKey.UniqueName
        } elseif ($key -is [System.Security.Cryptography.ICspAsymmetricAlgorithm]) {
            $facts.keyStorage = 'CAPI'
            $facts.keyProvider = [string] $key.CspKeyContainerInfo.ProviderName
            $uniqueName = [string] $key.CspKeyContainerInfo.UniqueKeyContainerName
        } else {
            $facts.keyError = 'the private key is neither a CNG nor a CAPI key this script can locate'
        }
        # .NET 4.7+ may open a CAPI key through CNG: the CSP name comes from .PrivateKey then.
        $capiProvider = Get-CapiProviderName -Certificate $Certificate
        if ($null -ne $capiProvider) { $facts.keyProvider = $capiProvider }
        if (-not [string]::IsNullOrEmpty($uniqueName)) {
            $found = Find-KeyFile -UniqueName $uniqueName
            if ($null -eq $found) {
                $facts.keyError = 'no file named {0} in any machine key folder ({1})' -f $uniqueName, ($KeyFolders -join ', ')
            } else {
                $facts.keyFolder = $found[0]
                $facts.keyFile = $found[1]
                $facts.readers = Get-KeyReaders -Path $facts.keyFile
            }
        }
    } catch {
        $facts.keyError = $_.Exception.Message
    } finally {
        if ($key -is [System.IDisposable]) { $key.Dispose() }
    }
    return $facts
}

function Get-CertificateFacts {
    # Flat projections: serialising certificate objects drags PrivateKey along (throws for CNG).
    $certificates = New-Object System.Collections.Generic.List[object]
    foreach ($certificate in @(Get-ChildItem -Path 'Cert:\LocalMachine\My' -ErrorAction Stop)) {
        $key = Get-KeyFacts -Certificate $certificate
        $certificates.Add([ordered]@{
            thumbprint    = [string] $certificate.Thumbprint
            der           = [Convert]::ToBase64String($certificate.RawData)
            hasPrivateKey = [bool] $certificate.HasPrivateKey
            notAfter      = ConvertTo-IsoUtc -Value $certificate.NotAfter
            keyStorage    = $key.keyStorage
            keyProvider   = $key.keyProvider
            keyFolder     = $key.keyFolder
            keyFile       = $key.keyFile
            readers       = $key.readers
            keyError      = $key.keyError
        })
    }
    return , $certificates.ToArray()
}

function Read-ConfigFile {
    # One file, read in its own try: missing is exists=false; a file that is there but cannot
    # be read (access denied, locked, a UNC path beyond the second hop) carries its error.
    # ReadAllBytes rather than Test-Path: Test-Path says False on access denied.
    param([string] $Path)
    $file = [ordered]@{ path = $Path; exists = $true; content = $null; error = $null }
    try {
        $file.content = [Convert]::ToBase64String([System.IO.File]::ReadAllBytes($Path))
    } catch {
        $exception = $_.Exception
        while ($exception -is [System.Management.Automation.MethodInvocationException] -and $null -ne $exception.InnerException) { $exception = $exception.InnerException }
        if ($exception -is [System.IO.FileNotFoundException] -or $exception -is [System.IO.DirectoryNotFoundException]) {
            $file.exists = $false
        } else {
            $file.error = '{0}: {1}' -f $exception.GetType().FullName, $exception.Message
        }
    }
    return $file
}

function Get-ConfigFileFacts {
    # Each relative config path under each folder, once. Paths are joined as text: Join-Path
    # asks the provider and throws for a drive letter that no longer exists.
    param([string[]] $Folders, [string[]] $RelativePaths)
    $files = New-Object System.Collections.Generic.List[object]
    $seen = New-Object 'System.Collections.Generic.HashSet[string]' ([StringComparer]::OrdinalIgnoreCase)
    foreach ($folder in $Folders) {
        if ([string]::IsNullOrWhiteSpace($folder)) { continue }
        foreach ($relativePath in $RelativePaths) {
            $path = $folder.TrimEnd('\', '/') + '\' + $relativePath.TrimStart('\', '/')
            if (-not $seen.Add($path)) { continue }
            $files.Add((Read-ConfigFile -Path $path))
        }
    }
    return , $files.ToArray()
}

# Every way out writes one document: a failure outside the per-item reads is its "error".
try {
    $services = Get-ServiceFacts -Patterns $ServicePatterns
    $iisPresence = Get-IisPresence
    $iis = $null
    if ($iisPresence.installed -and $iisPresence.module) {
        try { $iis = Get-IisFacts } catch { $iisPresence.error = $_.Exception.Message }
    }
    $folders = New-Object System.Collections.Generic.List[string] -ErrorAction Stop
    foreach ($service in $services) { $folders.Add([string] $service.installFolder) }
    if ($null -ne $iis) {
        foreach ($application in $iis.applications) { $folders.Add([string] $application.physicalPath) }
    }

    $facts = [ordered]@{
        schemaVersion = $SchemaVersion
        computerName  = [string] $env:COMPUTERNAME
        gatheredAt    = ConvertTo-IsoUtc -Value ([datetime]::UtcNow)
        psVersion     = [string] $PSVersionTable.PSVersion
        services      = $services
        iisPresence   = $iisPresence
        iis           = $iis
        httpSys       = Invoke-NativeText -FilePath ([System.IO.Path]::Combine($env:windir, 'System32', 'netsh.exe')) -Arguments 'http show sslcert'
        certificates  = Get-CertificateFacts
        configFiles   = Get-ConfigFileFacts -Folders $folders.ToArray() -RelativePaths $ConfigFiles
    }
} catch {
    $facts = [ordered]@{ schemaVersion = $SchemaVersion; error = [string] $_.Exception.Message }
}
ConvertTo-Json -InputObject $facts -Depth 10 -Compress
